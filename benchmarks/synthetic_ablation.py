"""What each synthetic-data and calibration option changes, measured on a small trained model.

    PYTHONPATH=. .venv/bin/python benchmarks/synthetic_ablation.py

Trains a small QuartzNet for seconds on the toy task of `tests/toy_speech.py`, quantizes it with
each setting (8 synthetic samples of 60-120 frames unless the row says otherwise), and prints the
argmax agreement of the integer model with FP32 on 64 held-out toy utterances, the agreement on
held-out synthetic inputs (the report's figure) and the final BN-statistics loss. Channel
equalization stays off here, as when the README's table was measured (benchmarks/equalization.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from quantizer.graph import FloatModel
from quantizer.pipeline import CalibrationSettings, quantize_checkpoint
from quantizer.reference import argmax_tokens, quantize_features
from quantizer.simulate import simulate
from quantizer.synthetic import SyntheticSettings
from tests.conftest import small_quartznet_config, trained_nemo
from tests.toy_speech import ToySpeech

BASE = dict(samples=8, frames=120, min_frames=60, iters=60, batch_size=8)
NO_EQUALIZATION = dict(equalize=0.0)
ROWS = [
    ("no optimisation: the starting inputs (iters 0)", dict(iters=0), {}),
    ("the paper's start: uniform noise, no input prior", dict(input_prior=False, speech_like_start=False), {}),
    ("white-noise start (the default until session 11)", dict(speech_like_start=False), {}),
    ("fixed length 120", dict(min_frames=120), {}),
    ("base: speech-like start, prior, lengths 60-120, 60 steps, percentile 99.99", {}, {}),
    ("200 steps", dict(iters=200), {}),
    ("32 samples", dict(samples=32), {}),
    ("per-sample statistics", dict(per_sample=True), {}),
    ("calibration: max", {}, dict(method="minmax")),
    ("calibration: MSE", {}, dict(method="mse")),
    ("calibration: percentile 99.9", {}, dict(percentile=99.9)),
]


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    checkpoint = trained_nemo(small_quartznet_config(), folder / "toy.nemo", seed=1)
    features, lengths, _, _ = ToySpeech(bins=16, labels=28, seed=1).batch(64)
    print("| setting | agreement, toy speech | agreement, synthetic | final BN loss |")
    print("| --- | --- | --- | --- |")
    for name, synthetic, calibration in ROWS:
        model, report, graph = quantize_checkpoint(
            checkpoint,
            SyntheticSettings(**(BASE | synthetic)),
            calibration=CalibrationSettings(**(NO_EQUALIZATION | calibration)),
        )
        logits, out_lengths = simulate(model, quantize_features(features.numpy(), model), lengths.numpy())
        with torch.no_grad():
            float_logits, _ = FloatModel(graph)(features, lengths)
        valid = np.arange(logits.shape[2])[None, :] < out_lengths[:, None]
        agreement = (argmax_tokens(logits) == float_logits.argmax(1).numpy())[valid].mean()
        print(
            f"| {name} | {agreement:.2%} | {report['argmax_agreement']:.2%} | "
            f"{report['synthetic']['final_loss']:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
