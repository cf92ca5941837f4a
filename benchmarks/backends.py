"""Speed and file size of every backend, side by side in one run.

    .venv/bin/python benchmarks/backends.py [--model DIR] [--rounds 20] [--threads 2] [--seconds 10]

Without --model, builds the QuartzNet-15x5 architecture (random weights, BatchNorm statistics
measured on random speech-like inputs) and quantizes it cheaply (speed does not depend on the
calibration). Each round runs every backend once, in rotating order, on the same batch of
`--seconds` of features; the table gives medians and the speed-up over `fp32`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from quantizer.features import LogMelFrontEnd
from quantizer.integer_model import IntegerModel
from quantizer.nemo_configs import quartznet_config, save_nemo_model
from quantizer.onnx_export import BACKEND_FILES, write_backends
from quantizer.pipeline import CalibrationSettings, quantize_checkpoint
from quantizer.runtime import Recognizer, device_for
from quantizer.synthetic import SyntheticSettings


def prepare(work: Path) -> Path:
    folder = work / "quartznet15x5-bench"
    if not (folder / BACKEND_FILES["integer"]).exists():
        checkpoint = work / "quartznet15x5.nemo"
        if not checkpoint.exists():
            save_nemo_model(quartznet_config(), checkpoint)
        cheap = SyntheticSettings(samples=2, frames=200, min_frames=200, iters=5, batch_size=2)
        model, _, graph = quantize_checkpoint(checkpoint, cheap, calibration=CalibrationSettings(eval_samples=1))
        model.save(folder)
        write_backends(folder, model, graph)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a folder written by qasr quantize")
    parser.add_argument("--work", type=Path, default=Path("/tmp/qasr-bench"))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per utterance")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--device", default="cpu", help="for qdq and fp32: auto tries TensorRT, then CUDA (integer/int8: CPU only)"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    folder = args.model or prepare(args.work)
    backends = list(BACKEND_FILES)
    recognizers = {b: Recognizer(folder, b, device_for(b, args.device), args.threads) for b in backends}
    model = IntegerModel.load(folder)
    sizes = {b: (folder / BACKEND_FILES[b]).stat().st_size for b in backends}
    frames = int(args.seconds * LogMelFrontEnd.of(model).frames_per_second)
    rows = {}
    for batch in args.batches:
        features = np.random.default_rng(0).normal(size=(batch, model.feat_in, frames)).astype(np.float32)
        lengths = np.full(batch, frames, np.int64)
        times: dict[str, list[float]] = {b: [] for b in backends}
        for recognizer in recognizers.values():  # warm-up
            recognizer(features, lengths)
        for round_index in range(args.rounds):
            order = backends[round_index % len(backends) :] + backends[: round_index % len(backends)]
            for backend in order:
                start = time.perf_counter()
                recognizers[backend](features, lengths)
                times[backend].append(time.perf_counter() - start)
        rows[batch] = {b: statistics.median(t) for b, t in times.items()}
    print(
        f"{folder}: {args.seconds:g} s of audio per utterance, {args.threads} threads, "
        f"medians of {args.rounds} alternated rounds"
    )
    header = " | ".join(f"batch {b} ms | vs fp32" for b in args.batches)
    print(f"| backend | provider | {header} | file MB | fp32 / file |")
    print("| --- | --- | " + " | ".join("--- | ---" for _ in args.batches) + " | --- | --- |")
    for backend in backends:
        cells = " | ".join(
            f"{rows[b][backend] * 1e3:.1f} | {rows[b]['fp32'] / rows[b][backend]:.2f}x" for b in args.batches
        )
        provider = recognizers[backend].provider.removesuffix("ExecutionProvider")
        print(
            f"| {backend} | {provider} | {cells} | {sizes[backend] / 1e6:.1f} | {sizes['fp32'] / sizes[backend]:.2f} |"
        )


if __name__ == "__main__":
    main()
