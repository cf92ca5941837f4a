"""What quantization did to a model: per-layer scales and SQNR, size, argmax agreement with FP32."""

from __future__ import annotations

import numpy as np
import torch

from quantizer.graph import FloatGraph, FloatModel, valid_mask
from quantizer.integer_model import IntegerModel
from quantizer.reference import argmax_tokens, quantize_features
from quantizer.simulate import simulate


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """10 log10(signal power / error power); inf when they are equal."""
    noise = float(np.sum((reference - approximation) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0:
        return float("inf")
    return 10 * float(np.log10(max(signal, 1e-30) / noise))


def _valid(y: torch.Tensor | np.ndarray, lengths) -> np.ndarray:
    y = torch.as_tensor(y)
    mask = valid_mask(torch.as_tensor(lengths), y.shape[2])[:, None, :].expand_as(y)
    return y[mask].double().numpy()


def model_sizes(graph: FloatGraph, model: IntegerModel) -> dict:
    """Bytes of parameters: FP32, and the integer model with weights packed at their bit width."""
    fp32 = 4 * graph.parameter_count()
    bits = model.settings["weight_bits"]
    weights = sum(t.weight.size for n in model.nodes for t in n.terms)
    per_channel = sum(t.bias.size * 4 + t.multiplier.size * 4 for n in model.nodes for t in n.terms)
    shifts = sum(n.shift.size for n in model.nodes)  # one byte each
    quantized = weights * bits // 8 + per_channel + shifts
    return {"fp32_bytes": fp32, "quantized_bytes": quantized, "compression": fp32 / quantized}


@torch.no_grad()
def evaluate(graph: FloatGraph, model: IntegerModel, features: np.ndarray, lengths: np.ndarray) -> dict:
    """Compare the integer model (bit-exact executor) with FP32 on held-out inputs, node by node."""
    float_outputs: dict[str, np.ndarray] = {}
    integer_outputs: dict[str, np.ndarray] = {}
    float_model = FloatModel(graph)
    scales = {node.name: node.scale for node in model.nodes}
    agree = total = 0
    for start in range(len(features)):
        x, x_lengths = features[start : start + 1], lengths[start : start + 1]

        def keep_float(name, y, out_lengths):
            float_outputs.setdefault(name, []).append(_valid(y, out_lengths))

        def keep_integer(name, y, out_lengths):
            integer_outputs.setdefault(name, []).append(_valid(y, out_lengths) * scales[name])

        float_logits, out_lengths = float_model(torch.from_numpy(x), torch.from_numpy(x_lengths), on_node=keep_float)
        integer_logits, _ = simulate(model, quantize_features(x, model), x_lengths, on_node=keep_integer)
        n = int(out_lengths[0])
        agree += int((argmax_tokens(integer_logits)[0, :n] == float_logits[0, :, :n].argmax(0).numpy()).sum())
        total += n
    layers = []
    for node in model.nodes:
        reference = np.concatenate(float_outputs[node.name])
        approximation = np.concatenate(integer_outputs[node.name])
        layers.append(
            {
                "name": node.name,
                "bits": node.bits,
                "signed": node.signed,
                "scale": node.scale,
                "terms": len(node.terms),
                "sqnr_db": round(sqnr_db(reference, approximation), 2),
            }
        )
    return {"argmax_agreement": agree / max(total, 1), "frames": total, "layers": layers}
