"""Turn a BN-folded float graph and calibrated activation ranges into an IntegerModel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantizer.graph import FEATURES, FloatGraph, term_key
from quantizer.integer_model import IntegerModel, IntegerNode, IntegerTerm
from quantizer.rounding import compensated_codes

MULTIPLIER_BITS = 24  # numerators lie in [2^23, 2^24] for a node's largest term (int32 in files)
LOGIT_BITS = 24  # the decoder's int32 logits keep 24 signed bits
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class QuantSettings:
    weight_bits: int = 8
    act_bits: int = 8

    def __post_init__(self):
        for name in ("weight_bits", "act_bits"):
            bits = getattr(self, name)
            if not 2 <= bits <= 8:
                raise ValueError(f"{name} must be between 2 and 8, got {bits}")


def symmetric_max(bits: int) -> int:
    """Largest code of a symmetric signed range [-(2^(b-1) - 1), 2^(b-1) - 1]."""
    return 2 ** (bits - 1) - 1


def quantize_weight(
    weight: np.ndarray, bits: int, gram: np.ndarray | None = None, groups: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric quantization: (int8 [C_out, C_in, K], scale float64 [C_out]).

    Codes are the nearest, or with the input Gram matrix of `quantizer.rounding.term_gram`, the
    ones that compensate each other's rounding on those inputs (same scale)."""
    peak = np.abs(weight.astype(np.float64)).reshape(weight.shape[0], -1).max(axis=1)
    scale = np.where(peak > 0, peak / symmetric_max(bits), 1.0)
    if gram is None:
        codes = np.clip(np.round(weight / scale[:, None, None]), -symmetric_max(bits), symmetric_max(bits))
    else:
        codes = compensated_codes(weight, scale, gram, groups, symmetric_max(bits))
    return codes.astype(np.int8), scale


def dyadic(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real multipliers [terms, C] -> integer numerators [terms, C] and one shift per channel [C].

    real[i, c] ~= numerator[i, c] / 2^shift[c]; the largest term of each channel gets
    MULTIPLIER_BITS of precision.
    """
    peak = real.max(axis=0)
    _, exponent = np.frexp(np.where(peak > 0, peak, 1.0))
    shift = (MULTIPLIER_BITS - exponent).astype(np.int64)
    if shift.min() < 1 or shift.max() > 62:
        raise ValueError(f"requantization multiplier out of the dyadic range (shifts {shift.min()}..{shift.max()})")
    numerator = np.round(real * np.exp2(shift.astype(np.float64))).astype(np.int64)
    return numerator, shift


def output_range(relu: bool, bits: int) -> tuple[int, int]:
    """Unsigned after ReLU (one extra bit), symmetric signed otherwise."""
    return (0, 2**bits - 1) if relu else (-symmetric_max(bits), symmetric_max(bits))


def check_accumulator_bound(node_name: str, term: IntegerTerm, input_max: int) -> None:
    """Refuse a term whose accumulator could leave int32 (integer runtimes accumulate in int32)."""
    weight_sum = np.abs(term.weight.astype(np.int64)).reshape(term.weight.shape[0], -1).sum(axis=1)
    bound = int((weight_sum * input_max + np.abs(term.bias.astype(np.int64))).max())
    if bound > INT32_MAX:
        raise ValueError(
            f"{node_name}: an int32 accumulator could overflow (bound {bound}): use fewer weight or activation bits"
        )


def quantize_graph(
    graph: FloatGraph,
    ranges: dict[str, float],
    settings: QuantSettings,
    grams: dict[tuple[int, int], np.ndarray] | None = None,
) -> IntegerModel:
    """ranges: largest real magnitude to represent, per tensor name (FEATURES, every node, and the
    terms of multi-term nodes under `term_key`); grams: input Gram matrices per (node, term) index
    (`quantizer.rounding.input_grams`) for error-compensating rounding, else nearest codes."""
    scales = {FEATURES: max(ranges[FEATURES], 1e-8) / symmetric_max(settings.act_bits)}
    input_max = {FEATURES: symmetric_max(settings.act_bits)}
    nodes = []
    for index, node in enumerate(graph.nodes):
        is_output = index == len(graph.nodes) - 1
        bits = LOGIT_BITS if is_output else settings.act_bits
        out_min, out_max = output_range(node.relu, bits)
        scale = max(ranges[node.name], 1e-8) / out_max
        quantized = [
            quantize_weight(t.weight, settings.weight_bits, None if grams is None else grams[(index, j)], t.groups)
            for j, t in enumerate(node.terms)
        ]
        weights, weight_scales = [w for w, _ in quantized], [s for _, s in quantized]
        real = np.stack([scales[t.source] * ws / scale for t, ws in zip(node.terms, weight_scales, strict=True)])
        numerators, shift = dyadic(real)
        terms = []
        for term, weight, weight_scale, numerator in zip(node.terms, weights, weight_scales, numerators, strict=True):
            accumulator_scale = scales[term.source] * weight_scale
            bias = np.clip(np.round(term.bias / accumulator_scale), -INT32_MAX, INT32_MAX).astype(np.int32)
            terms.append(
                IntegerTerm(
                    source=term.source,
                    weight=weight,
                    bias=bias,
                    multiplier=numerator,
                    weight_scale=weight_scale,
                    stride=term.stride,
                    dilation=term.dilation,
                    padding=term.padding,
                    groups=term.groups,
                    output_range=ranges.get(term_key(node.name, len(terms)), 0.0) if len(node.terms) > 1 else 0.0,
                )
            )
            check_accumulator_bound(node.name, terms[-1], input_max[term.source])
        nodes.append(IntegerNode(node.name, terms, shift, node.relu, out_min, out_max, scale, bits))
        scales[node.name] = scale
        input_max[node.name] = out_max
    return IntegerModel(
        feat_in=graph.feat_in,
        input_scale=scales[FEATURES],
        input_bits=settings.act_bits,
        nodes=nodes,
        labels=graph.labels,
        preprocessor=graph.preprocessor,
        filterbank=graph.filterbank,
        window=graph.window,
        settings={"weight_bits": settings.weight_bits, "act_bits": settings.act_bits},
    )
