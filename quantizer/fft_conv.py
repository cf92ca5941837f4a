"""Depthwise convolutions by FFT: the long-kernel convolutions of QuartzNet and Jasper, fast on CPUs.

PyTorch's CPU kernels run a depthwise convolution of 33-87 taps at about 1 GFLOP/s; the same
cross-correlation through rfft/irfft is 4-7x faster here, forward and backward, and equal to float
rounding. Used wherever a float model is run or trained (synthesis, calibration, training), never
for integer arithmetic, where only exact sums will do.
"""

from __future__ import annotations

import scipy.fft
import torch


def is_depthwise(weight: torch.Tensor, groups: int, stride: int) -> bool:
    """weight [C_out, C_in / groups, K]: one filter per channel, stride 1, more than one tap."""
    return groups == weight.shape[0] and weight.shape[1] == 1 and stride == 1 and weight.shape[2] > 1


def depthwise_conv1d_fft(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding: int = 0, dilation: int = 1
) -> torch.Tensor:
    """torch.nn.functional.conv1d(x, weight, bias, 1, padding, dilation, groups=C) by FFT.

    x [B, C, T], weight [C, 1, K] -> [B, C, T + 2 * padding - dilation * (K - 1)].
    """
    taps = weight[:, 0, :]
    if dilation > 1:
        spread = taps.new_zeros(taps.shape[0], dilation * (taps.shape[1] - 1) + 1)
        spread[:, ::dilation] = taps
        taps = spread
    span, frames = taps.shape[1], x.shape[-1]
    size = scipy.fft.next_fast_len(frames + span - 1, real=True)
    full = torch.fft.irfft(torch.fft.rfft(x, size) * torch.fft.rfft(taps.flip(-1), size), size)
    start = span - 1 - padding  # full[j] is output frame j - (span - 1) + padding
    out = full[..., start : start + frames + 2 * padding - span + 1]
    return out if bias is None else out + bias[:, None]
