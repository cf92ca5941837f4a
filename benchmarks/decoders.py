"""What the lexicon beam search costs next to greedy decoding and the model itself, in one run.

    .venv/bin/python benchmarks/decoders.py --model DIR --manifest M [--utterances 20] [--beam 50]

DIR: a folder written by `qasr quantize`. For each utterance the `integer` graph runs once and both
decoders read the same log-probabilities; the table gives seconds per audio second (the real-time
factor) of the model and of each decoder, summed over the utterances, and the ratio lexicon/greedy.
"""

from __future__ import annotations

import argparse
import time

from quantizer.ctc import frame_log_probabilities
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.integer_model import IntegerModel
from quantizer.lexicon import LexiconDecoder, LexiconSettings
from quantizer.manifest import load_audio, read_manifest
from quantizer.runtime import Recognizer, logit_scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--beam", type=int, default=LexiconSettings().beam)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    model = IntegerModel.load(args.model)
    front_end = LogMelFrontEnd.of(model)
    recognizer = Recognizer(args.model, "integer", "cpu", args.threads)
    scale = logit_scale(model, "integer")
    start = time.perf_counter()
    lexicon = LexiconDecoder(model.labels, LexiconSettings(beam=args.beam))
    build_s = time.perf_counter() - start
    seconds = {"model": 0.0, "greedy": 0.0, "lexicon": 0.0}
    audio_s = 0.0
    for utterance in read_manifest(args.manifest, model.labels)[: args.utterances]:
        audio = load_audio(utterance.audio)
        audio_s += len(audio) / front_end.sample_rate
        start = time.perf_counter()
        result = recognizer(*front_end(*pad_audio([audio])), with_logits=True)
        seconds["model"] += time.perf_counter() - start
        logits = result.logits[0, :, : result.lengths[0]]
        start = time.perf_counter()
        frame_log_probabilities(logits, scale).argmax(axis=1)
        seconds["greedy"] += time.perf_counter() - start
        start = time.perf_counter()
        lexicon.best_path(frame_log_probabilities(logits, scale))
        seconds["lexicon"] += time.perf_counter() - start
    print(
        f"{args.utterances} utterances, {audio_s:.1f} s of audio; lexicon built in {build_s:.1f} s (once per process)"
    )
    print("| stage | seconds per audio second |")
    print("| --- | --- |")
    for stage, total in seconds.items():
        print(f"| {stage} | {total / audio_s:.5f} |")
    print(
        f"lexicon / greedy decoding: {seconds['lexicon'] / seconds['greedy']:.0f}x; "
        f"lexicon / model: {seconds['lexicon'] / seconds['model']:.2f}x"
    )


if __name__ == "__main__":
    main()
