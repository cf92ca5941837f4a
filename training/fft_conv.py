"""Depthwise convolutions by FFT, for training on CPUs.

QuartzNet's depthwise convolutions have 33-87 taps; PyTorch's CPU kernels run them at about
1 GFLOP/s, and they take most of a training step. The same cross-correlation computed through
rfft/irfft is 4-7x faster here (forward and backward) and equal to float rounding. The swap keeps
every Parameter object and state-dict key, so checkpoints, optimizers and `model.nemo` are unchanged.
"""

from __future__ import annotations

import scipy.fft
import torch
from torch import nn


class FFTDepthwiseConv1d(nn.Conv1d):
    """A stride-1 depthwise nn.Conv1d (any dilation, symmetric zero padding) computed by FFT."""

    @classmethod
    def replacing(cls, conv: nn.Conv1d) -> FFTDepthwiseConv1d:
        """A module that computes what conv computes, sharing its weight and bias Parameters."""
        fft_conv = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            device="meta",  # placeholders, replaced by conv's own Parameters below
        )
        fft_conv.weight = conv.weight
        fft_conv.bias = conv.bias
        return fft_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T] -> [B, C, T + 2 * padding - dilation * (kernel - 1)]."""
        taps = self.weight[:, 0, :]  # [C, k]
        if self.dilation[0] > 1:
            spread = taps.new_zeros(taps.shape[0], self.dilation[0] * (taps.shape[1] - 1) + 1)
            spread[:, :: self.dilation[0]] = taps
            taps = spread
        span, frames, padding = taps.shape[1], x.shape[-1], self.padding[0]
        size = scipy.fft.next_fast_len(frames + span - 1, real=True)
        full = torch.fft.irfft(torch.fft.rfft(x, size) * torch.fft.rfft(taps.flip(-1), size), size)
        start = span - 1 - padding  # full[j] is the output frame j - (span - 1) + padding
        out = full[..., start : start + frames + 2 * padding - span + 1]
        return out if self.bias is None else out + self.bias[:, None]


def replaceable(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv1d
        and conv.groups == conv.in_channels == conv.out_channels
        and conv.stride == (1,)
        and isinstance(conv.padding, tuple)
        and conv.padding_mode == "zeros"
        and conv.kernel_size[0] > 1
    )


def use_fft_depthwise(model: nn.Module) -> int:
    """Swap every replaceable depthwise convolution in model for its FFT form; returns how many."""
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if replaceable(child)
    ]
    for parent, name, child in swaps:
        setattr(parent, name, FFTDepthwiseConv1d.replacing(child))
    return len(swaps)
