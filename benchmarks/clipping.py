"""How much of the integer model's WER drift is clipping at its calibrated ranges.

    .venv/bin/python benchmarks/clipping.py --manifest ../shared/data/realspeech-dev/manifest.jsonl [--seeds 0 1]

For each seed, quantizes the model zero-shot (`qasr quantize` defaults) and prints greedy WER and
CER on the manifest for FP32, for FP32 with the input and every node's output clamped to the
integer model's range (clipping without rounding), and for the integer reference, one utterance
at a time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jiwer
import torch

from app.settings import SHIPPED_MODEL
from quantizer.ctc import greedy_text
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.graph import FloatModel
from quantizer.manifest import load_utterance, read_manifest
from quantizer.pipeline import quantize_checkpoint
from quantizer.reference import argmax_tokens, quantize_features
from quantizer.simulate import simulate
from quantizer.synthetic import SyntheticSettings


def transcripts(checkpoint: Path, manifest: Path, seed: int) -> tuple[list[str], dict[str, list[str]]]:
    """References and greedy transcripts by FP32, clamped FP32 and the integer reference."""
    model, _, graph = quantize_checkpoint(checkpoint, SyntheticSettings(seed=seed))
    front_end, float_model = LogMelFrontEnd.of(model), FloatModel(graph)
    ranges = {node.name: (node.out_min * node.scale, node.out_max * node.scale) for node in model.nodes}
    input_limit = model.input_max * model.input_scale

    def clamp(name, y, lengths):
        y.clamp_(*ranges[name])  # in place: the next nodes read this tensor

    utterances = read_manifest(manifest, model.labels)
    hypotheses: dict[str, list[str]] = {"fp32": [], "clamped": [], "integer": []}
    for utterance in utterances:
        features, frames = front_end(*pad_audio([load_utterance(utterance)]))
        x, x_frames = torch.from_numpy(features), torch.from_numpy(frames)
        with torch.no_grad():
            float_logits, lengths = float_model(x, x_frames)
            clamped_logits, _ = float_model(x.clamp(-input_limit, input_limit), x_frames, on_node=clamp)
        integer_logits, _ = simulate(model, quantize_features(features, model), frames)
        n = int(lengths[0])
        hypotheses["fp32"].append(greedy_text(float_logits[0].argmax(0).numpy(), n, model.labels))
        hypotheses["clamped"].append(greedy_text(clamped_logits[0].argmax(0).numpy(), n, model.labels))
        hypotheses["integer"].append(greedy_text(argmax_tokens(integer_logits)[0], n, model.labels))
    return [u.text for u in utterances], hypotheses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| seed | FP32 WER / CER % | FP32 clamped | integer |")
    print("| --- | --- | --- | --- |")
    for seed in args.seeds:
        references, hypotheses = transcripts(args.model, args.manifest, seed)
        cells = [
            f"{100 * jiwer.wer(references, h):.2f} / {100 * jiwer.cer(references, h):.2f}" for h in hypotheses.values()
        ]
        print(f"| {seed} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
