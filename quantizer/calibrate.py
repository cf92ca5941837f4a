"""Activation ranges of every tensor of a float graph, measured on (synthetic) calibration inputs."""

from __future__ import annotations

import numpy as np
import torch

from quantizer.graph import FEATURES, FloatModel, input_batches, term_key, valid_mask
from quantizer.quantize import output_range

CALIBRATION_METHODS = ("minmax", "percentile", "mse")
MSE_CANDIDATES = 64  # clipping ranges tried between 1/64 of the max and the max
MAX_VALUES_PER_BATCH = 1 << 20  # per tensor, kept for percentiles (evenly strided subsample)


def mse_optimal_range(magnitudes: np.ndarray, levels: int) -> float:
    """The clipping range that minimises the squared error of rounding |x| to `levels` steps and clipping."""
    peak = float(magnitudes.max())
    sample = magnitudes[:: max(1, magnitudes.size // (1 << 18))].astype(np.float64)
    best, best_error = peak, np.inf
    for fraction in np.arange(1, MSE_CANDIDATES + 1) / MSE_CANDIDATES:
        step = peak * fraction / levels
        error = np.mean((np.minimum(np.round(sample / step), levels) * step - sample) ** 2)
        if error < best_error:
            best, best_error = peak * fraction, error
    return best


def _valid_magnitudes(y: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    mask = valid_mask(lengths, y.shape[2])[:, None, :].expand_as(y)
    values = y.detach().abs()[mask]
    step = max(1, values.numel() // MAX_VALUES_PER_BATCH)
    return values[::step].numpy()


@torch.no_grad()
def calibrate_ranges(
    model: FloatModel,
    features: np.ndarray,
    lengths: np.ndarray,
    method: str = "percentile",
    percentile: float = 99.99,
    batch_size: int = 8,
    act_bits: int = 8,
) -> dict[str, float]:
    """Largest magnitude to represent per tensor, from |x| over valid frames: its max, a percentile,
    or the range whose rounding-plus-clipping error at `act_bits` is smallest (mse).

    Also measures each term of a multi-term node, keyed `term_key(node, j)`.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got '{method}'")
    magnitudes: dict[str, list[np.ndarray]] = {}

    def observe(name, y, out_lengths):
        magnitudes.setdefault(name, []).append(_valid_magnitudes(y, out_lengths))

    nodes = model.graph.nodes

    def observe_term(i, j, y, out_lengths):
        if len(nodes[i].terms) > 1:
            observe(term_key(nodes[i].name, j), y, out_lengths)

    for x, x_lengths in input_batches(features, lengths, batch_size):
        observe(FEATURES, x, x_lengths)
        model(x, x_lengths, on_term=observe_term, on_node=observe)
    relu = {node.name: node.relu for node in model.graph.nodes}
    levels = {name: output_range(relu.get(name, False), act_bits)[1] for name in magnitudes}
    ranges = {}
    for name, parts in magnitudes.items():
        values = np.concatenate(parts)
        if method == "minmax" or name == model.graph.output:  # logits keep 24 bits: no clipping
            peak = float(values.max())
        elif method == "percentile":
            peak = float(np.percentile(values, percentile))
        else:
            peak = mse_optimal_range(values, levels[name])
        ranges[name] = peak if peak > 0 else float(values.max() or 1.0)
    return ranges
