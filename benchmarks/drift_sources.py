"""Where the integer model's WER drift comes from: clipping, weight rounding or activation rounding.

    .venv/bin/python benchmarks/drift_sources.py --manifest ../shared/data/realspeech-dev/manifest.jsonl \
        [--seeds 0 1] [--rounding nearest|gptq]

For each seed, quantizes the model zero-shot (`qasr quantize` defaults, or the weight rounding
given) and prints greedy WER and CER on the manifest, one utterance at a time, for:
- FP32;
- clamped: FP32 with the input and every node's output clamped to the integer model's range
  (clipping without rounding);
- weights: FP32 with the integer model's weights (codes times scales), nothing else rounded;
- activations: FP32 with the input and every node's output rounded to its integer grid and clamped
  (the weights left in FP32);
- integer: the integer reference.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import jiwer
import numpy as np
import torch

from app.settings import SHIPPED_MODEL
from quantizer.ctc import greedy_text
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.graph import FloatGraph, FloatModel
from quantizer.integer_model import IntegerModel
from quantizer.manifest import load_utterance, read_manifest
from quantizer.pipeline import WEIGHT_ROUNDINGS, CalibrationSettings, quantize_checkpoint
from quantizer.reference import argmax_tokens, quantize_features
from quantizer.simulate import simulate
from quantizer.synthetic import SyntheticSettings

VARIANTS = ("fp32", "clamped", "weights", "activations", "integer")


def with_integer_weights(graph: FloatGraph, model: IntegerModel) -> FloatGraph:
    """The float graph with every weight replaced by its int8 code times its channel's scale."""
    rounded = copy.deepcopy(graph)
    for node, integer_node in zip(rounded.nodes, model.nodes, strict=True):
        for term, integer_term in zip(node.terms, integer_node.terms, strict=True):
            term.weight = (integer_term.weight * integer_term.weight_scale[:, None, None]).astype(np.float32)
    return rounded


def transcripts(checkpoint: Path, manifest: Path, seed: int, rounding: str) -> tuple[list[str], dict[str, list[str]]]:
    """References and greedy transcripts by each of VARIANTS."""
    calibration = CalibrationSettings(rounding=rounding)
    model, _, graph = quantize_checkpoint(checkpoint, SyntheticSettings(seed=seed), calibration=calibration)
    front_end = LogMelFrontEnd.of(model)
    float_model, rounded_weights = FloatModel(graph), FloatModel(with_integer_weights(graph, model))
    nodes = {node.name: node for node in model.nodes}
    input_limit = model.input_max * model.input_scale

    def clamp(name, y, lengths):
        node = nodes[name]
        y.clamp_(node.out_min * node.scale, node.out_max * node.scale)  # in place: the next nodes read it

    def round_to_grid(name, y, lengths):
        node = nodes[name]
        if node.bits <= 8:  # the logits keep 24 bits: their rounding is negligible
            y.copy_(torch.clamp(torch.floor(y / node.scale + 0.5), node.out_min, node.out_max) * node.scale)

    utterances = read_manifest(manifest, model.labels)
    hypotheses: dict[str, list[str]] = {variant: [] for variant in VARIANTS}
    for utterance in utterances:
        features, frames = front_end(*pad_audio([load_utterance(utterance)]))
        codes = quantize_features(features, model)
        x, x_frames = torch.from_numpy(features), torch.from_numpy(frames)
        rounded_x = torch.from_numpy(codes.astype(np.float32) * np.float32(model.input_scale))
        with torch.no_grad():
            logits = {
                "fp32": float_model(x, x_frames)[0],
                "clamped": float_model(x.clamp(-input_limit, input_limit), x_frames, on_node=clamp)[0],
                "weights": rounded_weights(x, x_frames)[0],
                "activations": float_model(rounded_x, x_frames, on_node=round_to_grid)[0],
            }
        tokens = {name: value[0].argmax(0).numpy() for name, value in logits.items()}
        integer_logits, lengths = simulate(model, codes, frames)
        tokens["integer"] = argmax_tokens(integer_logits)[0]
        for variant in VARIANTS:
            hypotheses[variant].append(greedy_text(tokens[variant], int(lengths[0]), model.labels))
    return [u.text for u in utterances], hypotheses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounding", choices=WEIGHT_ROUNDINGS, default=CalibrationSettings().rounding)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.manifest}, weight rounding {args.rounding}, greedy WER / CER %")
    print("| seed | " + " | ".join(VARIANTS) + " |")
    print("| --- | " + " | ".join("---" for _ in VARIANTS) + " |")
    for seed in args.seeds:
        references, hypotheses = transcripts(args.model, args.manifest, seed, args.rounding)
        cells = [
            f"{100 * jiwer.wer(references, h):.2f} / {100 * jiwer.cer(references, h):.2f}" for h in hypotheses.values()
        ]
        print(f"| {seed} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
