"""Swap a NeMo model's depthwise convolutions for their FFT form (quantizer.fft_conv) while training.

The depthwise convolutions took most of a training step on these CPUs; the swap keeps every
Parameter object and state-dict key, so checkpoints, optimizers and `model.nemo` are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from quantizer.fft_conv import depthwise_conv1d_fft, is_depthwise


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
        return depthwise_conv1d_fft(x, self.weight, self.bias, self.padding[0], self.dilation[0])


def replaceable(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv1d
        and is_depthwise(conv.weight, conv.groups, conv.stride[0])
        and isinstance(conv.padding, tuple)
        and conv.padding_mode == "zeros"
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
