"""What error-compensating weight rounding does to the integer model's WER drift, side by side.

    .venv/bin/python benchmarks/rounding.py --manifest ../shared/data/librispeech-mini-train/manifest.jsonl \
        [--seeds 0 1] [--decoder lexicon]

For each seed, quantizes the model zero-shot twice (`qasr quantize` defaults but the weight
rounding: nearest codes, then GPTQ on the synthetic inputs), and evaluates FP32 and both integer
graphs with ONNX Runtime on the manifest (repeat --manifest to pool several). Prints each WER,
its change from FP32, and the 95 % paired-bootstrap interval of GPTQ's WER minus nearest rounding's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from app.settings import SHIPPED_MODEL
from quantizer.evaluate import Evaluation, evaluate
from quantizer.lexicon import DECODERS, SHIPPED_LANGUAGE_MODEL, LexiconDecoder, LexiconSettings
from quantizer.onnx_export import write_backends
from quantizer.pipeline import CalibrationSettings, quantize_checkpoint
from quantizer.significance import paired_bootstrap_interval
from quantizer.synthetic import SyntheticSettings


def evaluations(
    checkpoint: Path, manifest: list[Path], seed: int, threads: int, decoder: str
) -> tuple[Evaluation, dict[str, Evaluation], dict[str, float]]:
    """FP32 and the integer graph per rounding, on the manifest; and each quantization's seconds."""
    integer: dict[str, Evaluation] = {}
    seconds: dict[str, float] = {}
    lexicon = None
    with tempfile.TemporaryDirectory() as folder:
        for rounding in ("nearest", "gptq"):
            out = Path(folder) / rounding
            synthetic, calibration = SyntheticSettings(seed=seed), CalibrationSettings(rounding=rounding)
            model, report, graph = quantize_checkpoint(checkpoint, synthetic, calibration=calibration)
            seconds[rounding] = report["seconds"]["quantize"]
            model.save(out)
            if decoder == "lexicon" and lexicon is None:  # the shipped word trigram, as `qasr eval` uses
                lexicon = LexiconDecoder(model.labels, LexiconSettings(language_model=str(SHIPPED_LANGUAGE_MODEL)))
            write_backends(out, model, graph)
            integer[rounding] = evaluate(out, manifest, "integer", threads=threads, lexicon=lexicon)
            if rounding == "nearest":  # the float graph is the same for both roundings
                fp32 = evaluate(out, manifest, "fp32", threads=threads, lexicon=lexicon)
    return fp32, integer, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--manifest", type=Path, action="append", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--decoder", choices=DECODERS, default="greedy")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{' + '.join(map(str, args.manifest))}, {args.decoder} decoding")
    print("| seed | FP32 WER % | nearest (change) | GPTQ (change) | GPTQ - nearest, 95 % interval | GPTQ seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for seed in args.seeds:
        fp32, integer, seconds = evaluations(args.model, args.manifest, seed, args.threads, args.decoder)
        nearest, gptq = integer["nearest"], integer["gptq"]
        low, high = paired_bootstrap_interval(nearest.edits, gptq.edits, nearest.words)
        cells = [f"{100 * r.wer:.2f} ({100 * (r.wer - fp32.wer):+.2f})" for r in (nearest, gptq)]
        print(
            f"| {seed} | {100 * fp32.wer:.2f} | {cells[0]} | {cells[1]} | {100 * low:+.2f} .. {100 * high:+.2f} "
            f"| {seconds['gptq'] - seconds['nearest']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
