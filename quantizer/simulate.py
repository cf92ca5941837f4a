"""A PyTorch executor of the integer model, for speed where the NumPy reference is too slow.

Convolutions run in float64 on integer-valued tensors, which is exact (every partial sum is an
integer below 2^53). Requantization then runs either
- `dyadic=True`: in int64 with the model's numerators and shifts: bit-exact with the reference
  (tested), used for reports on full-size models; or
- `dyadic=False`: with the real multipliers S_in * S_w / S_out in float64: the float simulation
  that measures what the dyadic approximation costs.
"""

from __future__ import annotations

import numpy as np
import torch

from quantizer.graph import FEATURES, valid_mask
from quantizer.integer_model import IntegerModel, IntegerNode


def _requantize(accumulators: list[torch.Tensor], node: IntegerNode, real: list[torch.Tensor] | None) -> torch.Tensor:
    if real is None:
        total = sum(
            acc.to(torch.int64) * torch.from_numpy(term.multiplier)[None, :, None]
            for acc, term in zip(accumulators, node.terms, strict=True)
        )
        shift = torch.from_numpy(node.shift)[None, :, None]
        y = ((total + (1 << (shift - 1))) >> shift).to(torch.float64)
    else:
        y = torch.floor(sum(acc * m[None, :, None] for acc, m in zip(accumulators, real, strict=True)) + 0.5)
    if node.relu:
        y = torch.relu(y)
    return torch.clamp(y, node.out_min, node.out_max)


@torch.no_grad()
def simulate(
    model: IntegerModel, codes: np.ndarray, lengths: np.ndarray, dyadic: bool = True, on_node=None
) -> tuple[np.ndarray, np.ndarray]:
    """codes int8 [B, F, T] -> (logits int64 [B, classes, T'], lengths [B]); on_node(name, codes, lengths)."""
    scales = {FEATURES: model.input_scale} | {node.name: node.scale for node in model.nodes}
    tensors = {FEATURES: (torch.from_numpy(codes.astype(np.float64)), torch.from_numpy(np.asarray(lengths)))}
    for node in model.nodes:
        accumulators, real = [], []
        for term in node.terms:
            x, x_lengths = tensors[term.source]
            if term.masks_input:
                x = x * valid_mask(x_lengths, x.shape[2])[:, None, :]
            accumulators.append(
                torch.nn.functional.conv1d(
                    x,
                    torch.from_numpy(term.weight.astype(np.float64)),
                    torch.from_numpy(term.bias.astype(np.float64)),
                    stride=term.stride,
                    padding=term.padding,
                    dilation=term.dilation,
                    groups=term.groups,
                )
            )
            real.append(torch.from_numpy(scales[term.source] * term.weight_scale / node.scale))
        out_lengths = node.terms[0].out_lengths(tensors[node.terms[0].source][1])
        y = _requantize(accumulators, node, None if dyadic else real)
        tensors[node.name] = (y, out_lengths)
        if on_node is not None:
            on_node(node.name, y, out_lengths)
    logits, out_lengths = tensors[model.output]
    return logits.to(torch.int64).numpy(), out_lengths.numpy()
