"""Training step time with PyTorch's depthwise convolutions against training.fft_conv's, side by side.

    .venv/bin/python benchmarks/train_step.py [--steps 6] [--threads 2]

Builds the shipped model's training configuration (training.train.model_config defaults), twice
from the same seed, and times forward, CTC loss, backward and the optimizer step on the same
batches of noise (6 utterances of 9-10 s: about the 64 s of padded audio a training batch holds),
alternating the two models step by step so that both see the same machine load. Prints ms per step
and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from quantizer.nemo_configs import ENGLISH_LABELS, build_nemo_model
from training.fft_conv import use_fft_depthwise
from training.train import TrainSettings, model_config

SAMPLE_RATE = 16000


def step_seconds(model, optimizer, signal: torch.Tensor, samples: torch.Tensor, targets: torch.Tensor) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = TrainSettings([], "")
    models = {}
    for name in ("conv1d", "fft"):
        model = build_nemo_model(model_config(settings), seed=0, realistic_batch_norm=False).train()
        if name == "fft":
            print(f"fft: {use_fft_depthwise(model)} depthwise convolutions swapped")
        models[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))
    generator = torch.Generator().manual_seed(0)
    totals = dict.fromkeys(models, 0.0)
    for step in range(args.steps + 1):  # step 0 warms up both
        samples = torch.randint(9 * SAMPLE_RATE, 10 * SAMPLE_RATE, (6,), generator=generator)
        signal = torch.randn(6, int(samples.max()), generator=generator) * 0.1
        targets = torch.randint(0, len(ENGLISH_LABELS), (6, 120), generator=generator)
        for name, (model, optimizer) in models.items():
            seconds = step_seconds(model, optimizer, signal, samples, targets)
            totals[name] += seconds if step else 0.0
    for name, total in totals.items():
        print(f"{name}: {1000 * total / args.steps:.0f} ms per step")
    print(f"speed-up: {totals['conv1d'] / totals['fft']:.2f}x")


if __name__ == "__main__":
    main()
