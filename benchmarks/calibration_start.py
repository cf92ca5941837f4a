"""How close the zero-shot integer model stays to FP32 on recorded speech, by synthetic start.

    .venv/bin/python benchmarks/calibration_start.py [--model M.nemo] [--manifest F] [--seeds 0 1]

Quantizes the model with the synthetic data starting from white noise (the paper) and from
speech-like noise (the default), for each seed, without channel equalization (benchmarks/equalization.py
measures that), and prints on utterances of the manifest (every
25th, 16 of them) the SQNR of the logits, of the worst layer, and the argmax agreement with FP32.
The last two rows calibrate on 16 other utterances of the manifest instead (not zero-shot: the
reference a data-free method tries to reach).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from app.settings import REPOSITORY, SHIPPED_MODEL
from quantizer import report
from quantizer.calibrate import calibrate_ranges
from quantizer.checkpoint import read_nemo
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.graph import FloatModel, build_float_graph
from quantizer.manifest import load_audio, read_manifest
from quantizer.pipeline import CalibrationSettings, quantize_checkpoint
from quantizer.quantize import QuantSettings, quantize_graph
from quantizer.synthetic import SyntheticSettings

MINI_TRAIN = REPOSITORY.parent / "shared" / "data" / "librispeech-mini-train" / "manifest.jsonl"
UTTERANCES = 16
STRIDE = 25


def features_of(front_end: LogMelFrontEnd, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    features, frames = front_end(*pad_audio([load_audio(path) for path in paths]))
    return features.astype(np.float32), frames


def row(name: str, graph, model, features, frames) -> str:
    measured = report.evaluate(graph, model, features, frames)
    layers = [layer["sqnr_db"] for layer in measured["layers"]]
    return f"| {name} | {layers[-1]:.2f} | {min(layers):.2f} | {measured['argmax_agreement']:.2%} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--manifest", type=Path, default=MINI_TRAIN)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    graph = build_float_graph(read_nemo(args.model))
    front_end = LogMelFrontEnd.of(graph)
    utterances = read_manifest(args.manifest, graph.labels)
    features, frames = features_of(front_end, [u.audio for u in utterances[::STRIDE][:UTTERANCES]])
    print("| calibration | logits SQNR dB | worst layer SQNR dB | argmax agreement |")
    print("| --- | --- | --- | --- |")
    for seed in args.seeds:
        for speech_like in (False, True):
            model, _, quantized_graph = quantize_checkpoint(
                args.model,
                SyntheticSettings(speech_like_start=speech_like, seed=seed),
                calibration=CalibrationSettings(equalize=0.0),
            )
            start = "speech-like" if speech_like else "white-noise (paper)"
            print(row(f"zero-shot, {start} start, seed {seed}", quantized_graph, model, features, frames), flush=True)
    recorded, recorded_frames = features_of(
        front_end, [u.audio for u in utterances[STRIDE // 2 :: STRIDE][:UTTERANCES]]
    )
    for method, percentile in (("percentile", 99.99), ("minmax", 100.0)):
        ranges = calibrate_ranges(FloatModel(graph), recorded, recorded_frames, method, percentile)
        recorded_model = quantize_graph(graph, ranges, QuantSettings())
        print(row(f"recorded speech, {method} {percentile:g}", graph, recorded_model, features, frames), flush=True)


if __name__ == "__main__":
    main()
