"""Channel equalization: rescale the channels of every inner tensor so that one per-tensor
activation scale serves them all better, leaving the float function unchanged.

A node's output channel c is divided by s[c] (its rows and bias, in every term; ReLU and the
frame mask commute with a positive scale) and every conv that reads it multiplies its input
column c by s[c]. Weights are quantized per output channel, so the producer's rows lose nothing,
nor does a depthwise reader (its column is its row); a full conv reader's columns share one scale.

s[c] = (peak[c] / max(peak)) ** strength, the peaks measured on the synthetic calibration inputs.
Synthetic per-channel peaks follow recorded speech only roughly (log correlation about 0.75 on
the shipped model), so a full equalization (strength 1) clips real speech in the channels it
raised; a partial one (0.25, the default) narrows the spread and improved the argmax agreement
with FP32 on recorded speech at every seed tried (README, "Channel equalization").
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from quantizer.graph import ConvTerm, FloatGraph, FloatModel, input_batches, valid_mask

MAX_GAIN = 16.0  # no channel is raised more than this, so dead channels stay near their scale


@torch.no_grad()
def channel_peaks(model: FloatModel, features: np.ndarray, lengths: np.ndarray, batch_size: int = 8) -> dict:
    """Largest |x| per channel over valid frames, for every node output: name -> float64 [C]."""
    peaks: dict[str, np.ndarray] = {}

    def observe(name, y, out_lengths):
        mask = valid_mask(out_lengths, y.shape[2])[:, None, :]
        peak = (y.abs() * mask).amax(dim=(0, 2)).double().numpy()
        peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak

    for x, x_lengths in input_batches(features, lengths, batch_size):
        model(x, x_lengths, on_node=observe)
    return peaks


def channel_scales(peaks: np.ndarray, strength: float) -> np.ndarray:
    """s [C] in [MAX_GAIN^-strength, 1]: the output channel is divided by s, its readers multiplied."""
    top = float(peaks.max())
    if top <= 0:
        return np.ones_like(peaks)
    return (np.maximum(peaks, top / MAX_GAIN) / top) ** strength


def _reader_columns(term: ConvTerm, in_scale: np.ndarray) -> np.ndarray:
    """in_scale [C_in] laid out over a reader's weight [C_out, C_in / groups, K]."""
    if term.groups == 1:
        return in_scale[None, :, None]
    if term.depthwise:  # input channel c is output channel c
        return in_scale[:, None, None]
    raise ValueError(f"cannot equalize the input of a grouped conv (groups {term.groups}, weight {term.weight.shape})")


def equalize_channels(graph: FloatGraph, peaks: dict[str, np.ndarray], strength: float) -> FloatGraph:
    """A copy of graph with every inner node's output channels rescaled (the logits are left alone)."""
    equalized = copy.deepcopy(graph)
    if strength == 0:
        return equalized
    scales = {node.name: channel_scales(peaks[node.name], strength) for node in equalized.nodes[:-1]}
    for node in equalized.nodes:
        out_scale = scales.get(node.name)
        for term in node.terms:
            weight = term.weight.astype(np.float64)
            if out_scale is not None:
                weight = weight / out_scale[:, None, None]
                term.bias = (term.bias / out_scale).astype(np.float32)
                if term.bn_mean is not None:
                    term.bn_mean = (term.bn_mean / out_scale).astype(np.float32)
                    term.bn_std = (term.bn_std / out_scale).astype(np.float32)
            in_scale = scales.get(term.source)
            if in_scale is not None:
                weight = weight * _reader_columns(term, in_scale)
            term.weight = weight.astype(np.float32)
    return equalized
