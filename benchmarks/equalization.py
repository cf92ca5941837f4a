"""What channel equalization does to the zero-shot integer model on recorded speech.

    .venv/bin/python benchmarks/equalization.py [--model M.nemo] [--strengths 0 0.25 0.5] [--seeds 0 1 2]

For each seed and equalization strength (`qasr quantize --equalize`), prints the SQNR of the
logits and the argmax agreement with FP32 on two recorded sets: all of realspeech-dev, and 32
utterances of librispeech-mini-train (every 18th from the 10th). Strength 0 is no equalization.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from app.settings import REPOSITORY, SHIPPED_MODEL
from quantizer import report
from quantizer.checkpoint import read_nemo
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.graph import build_float_graph
from quantizer.manifest import load_utterance, read_manifest
from quantizer.pipeline import CalibrationSettings, quantize_checkpoint
from quantizer.synthetic import SyntheticSettings

DATA = REPOSITORY.parent / "shared" / "data"
SETS = {  # name -> (manifest, slice of its utterances)
    "realspeech-dev": (DATA / "realspeech-dev" / "manifest.jsonl", slice(None)),
    "mini-train, 32": (DATA / "librispeech-mini-train" / "manifest.jsonl", slice(9, 9 + 18 * 32, 18)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.25, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    graph = build_float_graph(read_nemo(args.model))
    front_end = LogMelFrontEnd.of(graph)
    recorded = {}
    for name, (manifest, part) in SETS.items():
        utterances = read_manifest(manifest, graph.labels)[part]
        features, frames = front_end(*pad_audio([load_utterance(u) for u in utterances]))
        recorded[name] = (features.astype("float32"), frames)
    print("| seed | strength | " + " | ".join(f"{name}: logits SQNR dB, agreement" for name in SETS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in SETS) + " |")
    for seed in args.seeds:
        for strength in args.strengths:
            model, _, quantized_graph = quantize_checkpoint(
                args.model, SyntheticSettings(seed=seed), calibration=CalibrationSettings(equalize=strength)
            )
            cells = []
            for features, frames in recorded.values():
                measured = report.evaluate(quantized_graph, model, features, frames)
                cells.append(f"{measured['layers'][-1]['sqnr_db']:.2f}, {measured['argmax_agreement']:.2%}")
            print(f"| {seed} | {strength:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
