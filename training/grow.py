"""Deepen a training checkpoint without changing what it computes: QuartzNet 5xR to 5xR'.

    .venv/bin/python -m training.grow --checkpoint runs/qn5x3-192/checkpoint.pt --repeat 5 \
        --out runs/qn5x5-192/checkpoint.pt

A model that underfits needs capacity, and training a larger one from scratch costs everything
the small one has learnt. Here each block whose repeat count changes gets identity repeats
inserted after its existing ones (never after the last, whose output meets the residual): a
depthwise kernel that is a centred delta, an identity pointwise matrix, and a BatchNorm whose
running statistics and affine parameters cancel, so the new repeat returns its input. Its input
is ReLU(y) with y the previous BatchNorm's output, and in eval mode the ReLU that follows the new
repeat gives ReLU(ReLU(y)) = ReLU(y): the deeper model's outputs equal the old model's. The new
BatchNorm's statistics are the rectified-Gaussian moments of N(beta, gamma^2) (what the previous
BatchNorm emits in training), so in training mode it is close to the identity too.

Optimizer moments, the teacher head, the step counter and the audio seen carry over; the new
parameters start with fresh AdamW moments. Train on with `training.train --repeat R'`, or, with
--nemo PATH, also write the grown model as a .nemo for `training.device_train --init PATH`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from quantizer.nemo_configs import build_nemo_model
from training.torch_quartznet import BN_EPS
from training.train import TrainSettings, model_config

LAYERS_PER_REPEAT = 5  # ReLU, dropout, depthwise conv, pointwise conv, BatchNorm (the first repeat: the last 3)


def repeat_layers(repeat: int) -> tuple[int, int, int]:
    """mconv indices of a repeat's depthwise conv, pointwise conv and BatchNorm."""
    first = LAYERS_PER_REPEAT * repeat
    return first, first + 1, first + 2


def new_positions(old_repeat: int, new_repeat: int) -> list[int | None]:
    """For each new repeat, the old repeat it copies, or None for an inserted identity.

    Inserts are spread over the gaps after old repeats 0 .. old_repeat - 2, earliest first."""
    inserts = new_repeat - old_repeat
    if inserts < 0 or (inserts and old_repeat < 2):
        raise ValueError(f"can deepen blocks of 2 or more repeats only, {old_repeat} -> {new_repeat} asked")
    gaps = old_repeat - 1
    positions: list[int | None] = []
    for old in range(old_repeat):
        positions.append(old)
        if old < gaps:
            positions += [None] * (inserts // gaps + (old < inserts % gaps))
    return positions


def rectified_gaussian_moments(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ReLU(x), x ~ N(mean, std^2), per channel."""
    std = std.abs().clamp(min=1e-6)
    z = mean / std
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    first = mean * cdf + std * pdf
    second = (mean**2 + std**2) * cdf + mean * std * pdf
    return first, (second - first**2).clamp(min=1e-6)


def identity_repeat(
    layers: tuple[str, str, str], previous_bn: str, old: dict[str, torch.Tensor], kernel: int
) -> dict[str, torch.Tensor]:
    """State entries of a repeat (depthwise, pointwise, BatchNorm names) that passes on the ReLU'd
    output of the old BatchNorm `previous_bn`: a centred delta, the identity and a cancelling BatchNorm."""
    depthwise, pointwise, bn = layers
    channels = old[f"{previous_bn}.weight"].numel()
    delta = torch.zeros(channels, 1, kernel)
    delta[:, 0, kernel // 2] = 1.0
    mean, variance = rectified_gaussian_moments(old[f"{previous_bn}.bias"], old[f"{previous_bn}.weight"])
    return {
        f"{depthwise}.conv.weight": delta,
        f"{pointwise}.conv.weight": torch.eye(channels)[:, :, None],
        f"{bn}.weight": torch.sqrt(variance + BN_EPS),
        f"{bn}.bias": mean,
        f"{bn}.running_mean": mean,
        f"{bn}.running_var": variance,
        f"{bn}.num_batches_tracked": old[f"{previous_bn}.num_batches_tracked"].clone(),
    }


def grow_state(old: dict[str, torch.Tensor], old_config: dict, new_config: dict) -> dict[str, str | torch.Tensor]:
    """The new model's state dict: each entry an old key to copy, or a new tensor."""
    grown: dict[str, str | torch.Tensor] = {}
    old_blocks, new_blocks = old_config["encoder"]["jasper"], new_config["encoder"]["jasper"]
    for b, (old_block, new_block) in enumerate(zip(old_blocks, new_blocks, strict=True)):
        prefix = f"encoder.encoder.{b}.mconv"
        previous_bn = ""  # the old BatchNorm whose ReLU'd output an inserted repeat passes on
        for new, source in enumerate(new_positions(old_block["repeat"], new_block["repeat"])):
            new_layers = tuple(f"{prefix}.{i}" for i in repeat_layers(new))
            if source is None:
                grown.update(identity_repeat(new_layers, previous_bn, old, new_block["kernel"][0]))
                continue
            old_layers = [f"{prefix}.{i}" for i in repeat_layers(source)]
            previous_bn = old_layers[2]
            for old_layer, new_layer in zip(old_layers, new_layers, strict=True):
                for key in (k for k in old if k.startswith(old_layer + ".")):
                    grown[new_layer + key[len(old_layer) :]] = key
    for key in old:
        if ".mconv." not in key:
            grown[key] = key
    return grown


def grow_checkpoint(checkpoint: dict, repeat: int) -> dict:
    """A train.py checkpoint deepened to `repeat` repeats per block (see the module docstring)."""
    old_settings = TrainSettings(**checkpoint["settings"])
    new_settings = TrainSettings(**{**checkpoint["settings"], "repeat": repeat})
    old_config, new_config = model_config(old_settings), model_config(new_settings)
    old_model = build_nemo_model(old_config, realistic_batch_norm=False)
    new_model = build_nemo_model(new_config, realistic_batch_norm=False)
    old_state = checkpoint["model"]
    sources = grow_state(old_state, old_config, new_config)
    new_state = new_model.state_dict()
    if set(sources) != set(new_state):
        raise ValueError(f"grown keys differ from the model's: {sorted(set(sources) ^ set(new_state))[:5]}")
    state = {k: (old_state[s].clone() if isinstance(s, str) else s) for k, s in sources.items()}
    for key, tensor in state.items():
        if tensor.shape != new_state[key].shape:
            raise ValueError(f"{key}: grown {tuple(tensor.shape)}, model {tuple(new_state[key].shape)}")

    old_index = {name: i for i, (name, _) in enumerate(old_model.named_parameters())}
    optimizer = checkpoint["optimizer"]
    moments = {}
    for i, (name, _) in enumerate(new_model.named_parameters()):
        source = sources[name]
        if isinstance(source, str) and old_index[source] in optimizer["state"]:
            moments[i] = optimizer["state"][old_index[source]]
    (group,) = optimizer["param_groups"]
    new_group = {**group, "params": list(range(len(list(new_model.parameters()))))}
    return {
        **checkpoint,
        "model": state,
        "optimizer": {"state": moments, "param_groups": [new_group]},
        "settings": {**checkpoint["settings"], "repeat": repeat},
    }


def checkpoint_model(checkpoint: dict):
    """A train.py checkpoint's model as a NeMo EncDecCTCModel in eval mode."""
    model = build_nemo_model(model_config(TrainSettings(**checkpoint["settings"])), realistic_batch_norm=False)
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def save_nemo(checkpoint: dict, path: str | Path) -> None:
    """The checkpoint's model as a .nemo (what training.train writes at the end of a run)."""
    checkpoint_model(checkpoint).save_to(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a training.train checkpoint.pt")
    parser.add_argument("--repeat", type=int, required=True, help="repeats per block of the grown model")
    parser.add_argument("--out", required=True, help="where to write the grown checkpoint.pt")
    parser.add_argument("--nemo", default="", help="also write the grown model as this .nemo")
    args = parser.parse_args()
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grown = grow_checkpoint(checkpoint, args.repeat)
    torch.save(grown, out)
    if args.nemo:
        save_nemo(grown, args.nemo)
    print(f"{args.checkpoint}: repeat {checkpoint['settings']['repeat']} -> {args.repeat}, written to {out}")


if __name__ == "__main__":
    main()
