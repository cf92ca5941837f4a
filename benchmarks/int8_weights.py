"""The int8 graph with s8 weights against u8 weights, side by side: speed and agreement with the
exact integer reference on real speech.

    .venv/bin/python benchmarks/int8_weights.py --model DIR --manifest M [--utterances 56] [--threads 1]

Without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of products in saturating int16, so s8
weights lose agreement there; u8 weights (code + 128, zero point 128) run through u8 x u8
kernels that widen first (`quantizer.cpu`). Both graphs are built from the same folder; each
utterance runs once through every graph in rotating order, and times are summed per graph.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import onnx

from quantizer.cpu import INT8_WEIGHT_TYPES, int8_weight_type
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.integer_model import IntegerModel
from quantizer.manifest import load_audio, read_manifest
from quantizer.onnx_export import BACKEND_FILES, export_int8
from quantizer.runtime import Recognizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a folder written by qasr quantize")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--utterances", type=int, default=56)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    model = IntegerModel.load(args.model)
    front_end = LogMelFrontEnd.of(model)
    utterances = read_manifest(args.manifest, model.labels)[: args.utterances]
    with tempfile.TemporaryDirectory() as work:
        recognizers = {"integer": Recognizer(args.model, "integer", threads=args.threads)}
        for weights in INT8_WEIGHT_TYPES:
            folder = Path(work) / weights
            folder.mkdir()
            onnx.save(export_int8(model, weights), str(folder / BACKEND_FILES["int8"]))
            recognizers[weights] = Recognizer(folder, "int8", threads=args.threads)
        names = list(recognizers)
        seconds = dict.fromkeys(names, 0.0)
        matching = dict.fromkeys(INT8_WEIGHT_TYPES, 0)
        frames = 0
        audio_seconds = 0.0
        for index, utterance in enumerate(utterances):
            audio = load_audio(utterance.audio)
            audio_seconds += len(audio) / front_end.sample_rate
            features, lengths = front_end(*pad_audio([audio]))
            tokens = {}
            for name in names[index % len(names) :] + names[: index % len(names)]:
                start = time.perf_counter()
                result = recognizers[name](features, lengths)
                seconds[name] += time.perf_counter() - start
                tokens[name] = result.tokens[0, : int(result.lengths[0])]
            frames += len(tokens["integer"])
            for weights in INT8_WEIGHT_TYPES:
                matching[weights] += int((tokens[weights] == tokens["integer"]).sum())
    cpu = "x86 without VNNI" if int8_weight_type() == "u8" else "VNNI, or not x86"
    print(
        f"{args.model} on {len(utterances)} utterances of {args.manifest} ({audio_seconds:.0f} s, {frames} output "
        f"frames), {args.threads} threads, this CPU: {cpu} (auto picks {int8_weight_type()})"
    )
    print("| graph | s per audio s | vs integer | argmax agreement with the reference |")
    print("| --- | --- | --- | --- |")
    for name in names:
        agreement = "1 (bit-exact)" if name == "integer" else f"{matching[name] / frames:.4f}"
        label = name if name == "integer" else f"int8, {name} weights"
        rate = seconds[name] / audio_seconds
        print(f"| {label} | {rate:.5f} | {seconds['integer'] / seconds[name]:.2f}x | {agreement} |")


if __name__ == "__main__":
    main()
