"""The integer reference executor: NumPy, integer arithmetic only, from quantized features to argmax.

This is the single definition of the integer semantics (see `quantizer.integer_model`); every
fast path (ONNX graphs, simulations) is tested against it.
"""

from __future__ import annotations

import numpy as np

from quantizer.graph import FEATURES
from quantizer.integer_model import IntegerModel, IntegerNode, IntegerTerm


def quantize_features(features: np.ndarray, model: IntegerModel) -> np.ndarray:
    """The one float step, at the boundary: features [B, F, T] float32 -> int8 codes.

    floor(x / scale + 1/2) in float32 (IEEE-exact in every runtime), rounding half up like the shifts.
    """
    codes = np.floor(features.astype(np.float32) / np.float32(model.input_scale) + np.float32(0.5))
    return np.clip(codes, -model.input_max, model.input_max).astype(np.int8)


def _conv_input(x: np.ndarray, lengths: np.ndarray, term: IntegerTerm) -> np.ndarray:
    """int64 copy of x, padded frames zeroed where the kernel reads neighbours."""
    if not term.masks_input:
        return x.astype(np.int64)
    keep = np.arange(x.shape[2])[None, :] < lengths[:, None]  # [B, T]
    return np.where(keep[:, None, :], x, 0).astype(np.int64)


def integer_conv(x: np.ndarray, term: IntegerTerm) -> np.ndarray:
    """x int64 [B, C_in, T] (masked) -> accumulators [B, C_out, T'] including the bias.

    int64 here; quantize_graph guarantees every accumulator fits int32, as integer runtimes keep it.
    """
    batch, channels, frames = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (term.padding, term.padding)))
    out_frames = term.out_lengths(frames)
    weight = term.weight.astype(np.int64)
    span = term.stride * (out_frames - 1) + 1

    def tap(k: int) -> np.ndarray:  # [B, C_in, T'] input samples seen by kernel tap k
        start = k * term.dilation
        return padded[:, :, start : start + span : term.stride]

    if term.groups == 1:
        acc = np.zeros((batch, out_frames, weight.shape[0]), dtype=np.int64)
        for k in range(term.kernel):
            acc += np.matmul(tap(k).transpose(0, 2, 1), weight[:, :, k].T)
        acc = acc.transpose(0, 2, 1)
    elif term.depthwise and weight.shape[0] == channels:
        acc = np.zeros((batch, weight.shape[0], out_frames), dtype=np.int64)
        for k in range(term.kernel):
            acc += tap(k) * weight[None, :, 0, k, None]
    else:
        raise ValueError(f"groups={term.groups} is neither 1 nor depthwise")
    return acc + term.bias.astype(np.int64)[None, :, None]


def requantize(accumulators: list[np.ndarray], node: IntegerNode) -> np.ndarray:
    """sum_i acc_i * M_i, rounded half up by an arithmetic shift, ReLU, clamp."""
    total = sum(acc * term.multiplier[None, :, None] for acc, term in zip(accumulators, node.terms, strict=True))
    shift = node.shift[None, :, None]
    y = (total + (np.int64(1) << (shift - 1))) >> shift
    if node.relu:
        y = np.maximum(y, 0)
    return np.clip(y, node.out_min, node.out_max)


def container_dtype(node: IntegerNode) -> np.dtype:
    if node.bits > 8:
        return np.dtype(np.int32)
    return np.dtype(np.int8) if node.signed else np.dtype(np.uint8)


def run_integer(
    model: IntegerModel, codes: np.ndarray, lengths: np.ndarray, keep: bool = False
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """codes int8 [B, F, T], lengths [B] -> (int32 logits [B, classes, T'], lengths [B], tensors).

    `tensors` holds every node's integer output when keep is true (for reports and tests).
    """
    if codes.dtype != np.int8:
        raise TypeError(f"the reference takes int8 feature codes, got {codes.dtype}")
    lengths = np.asarray(lengths, dtype=np.int64)
    tensors: dict[str, tuple[np.ndarray, np.ndarray]] = {FEATURES: (codes, lengths)}
    for node in model.nodes:
        accumulators = []
        for term in node.terms:
            x, x_lengths = tensors[term.source]
            accumulators.append(integer_conv(_conv_input(x, x_lengths, term), term))
        out_lengths = node.terms[0].out_lengths(tensors[node.terms[0].source][1])
        tensors[node.name] = (requantize(accumulators, node).astype(container_dtype(node)), out_lengths)
    logits, out_lengths = tensors[model.output]
    kept = {name: value for name, (value, _) in tensors.items()} if keep else {}
    return logits, out_lengths, kept


def argmax_tokens(logits: np.ndarray) -> np.ndarray:
    """Integer argmax over classes: [B, classes, T'] -> [B, T'] (first maximum wins)."""
    return np.argmax(logits, axis=1)
