"""What computing depthwise convolutions by FFT (quantizer.fft_conv) saves, measured side by side.

    .venv/bin/python benchmarks/fft_conv.py [--rounds 5] [--threads 2]

Two workloads, each timed with PyTorch's own depthwise convolutions and with the FFT ones, the two
alternated round by round so that both see the same machine load:
- training: one step (forward, CTC loss, backward, AdamW) of the shipped model's training
  configuration (training.train defaults) on 6 noise utterances of 9-10 s, about one batch;
- synthesis: `qasr quantize`'s synthetic calibration data (its defaults: 8 inputs of 150-300
  frames) with 3 Adam steps instead of 100, on the QuartzNet-15x5 architecture, random weights.
Prints ms per training step and per 3-step synthesis, and the ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

import quantizer.graph
from quantizer.checkpoint import read_nemo
from quantizer.graph import FloatModel, build_float_graph
from quantizer.manifest import SAMPLE_RATE
from quantizer.nemo_configs import ENGLISH_LABELS, build_nemo_model, quartznet_config
from quantizer.synthetic import SyntheticSettings, generate
from training.fft_conv import use_fft_depthwise
from training.train import TrainSettings, model_config


def training_step(model, optimizer, generator: torch.Generator) -> float:
    samples = torch.randint(9 * SAMPLE_RATE, 10 * SAMPLE_RATE, (6,), generator=generator)
    signal = torch.randn(6, int(samples.max()), generator=generator) * 0.1
    targets = torch.randint(0, len(ENGLISH_LABELS), (6, 120), generator=generator)
    start = time.perf_counter()
    log_probs, lengths, _ = model.forward(input_signal=signal, input_signal_length=samples)
    target_lengths = torch.full((len(targets),), targets.shape[1])
    loss = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, lengths, target_lengths, len(ENGLISH_LABELS)
    )
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def synthesis(model: FloatModel, fft: bool) -> float:
    """generate() with 3 Adam steps; the baseline hides every conv from the FFT path."""
    settings = SyntheticSettings(iters=3)
    with mock.patch.object(quantizer.graph, "is_depthwise", quantizer.graph.is_depthwise if fft else lambda *a: False):
        start = time.perf_counter()
        generate(model, settings)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trainees = {}
    for fft in (False, True):
        model = build_nemo_model(model_config(TrainSettings([], "")), seed=0, realistic_batch_norm=False).train()
        if fft:
            use_fft_depthwise(model)
        trainees[fft] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4), torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "quartznet15x5.nemo"
        build_nemo_model(quartznet_config(), seed=0).save_to(str(path))
        float_model = FloatModel(build_float_graph(read_nemo(path)))
    seconds = {(w, fft): 0.0 for w in ("training", "synthesis") for fft in (False, True)}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for fft in (False, True):
            train_s = training_step(*trainees[fft])
            synth_s = synthesis(float_model, fft)
            if round_:
                seconds["training", fft] += train_s
                seconds["synthesis", fft] += synth_s
    for workload in ("training", "synthesis"):
        conv, fft = (1000 * seconds[workload, f] / args.rounds for f in (False, True))
        print(f"{workload}: conv1d {conv:.0f} ms, fft {fft:.0f} ms, {conv / fft:.2f}x")


if __name__ == "__main__":
    main()
