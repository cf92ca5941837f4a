"""What the lexicon beam search costs next to greedy decoding and the model itself, in one run.

    .venv/bin/python benchmarks/decoders.py --model DIR --manifest M [--utterances 20] [--beam 400]
        [--language-model ARPA]

DIR: a folder written by `qasr quantize`. For each utterance the `integer` graph runs once and every
decoder reads the same log-probabilities: greedy, the lexicon search with wordfreq unigrams, the
lexicon search with an ARPA n-gram (default: the shipped trigram), and the same n-gram with the
narrower search that was the default until session 24 (beam 50, every class, threshold 25). The
table gives seconds per audio second (the real-time factor) of the model and of each decoder, summed
over the utterances; building each lexicon is timed once, with the memory it added (proportional set size).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from quantizer.ctc import frame_log_probabilities
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.integer_model import IntegerModel
from quantizer.lexicon import SHIPPED_LANGUAGE_MODEL, LexiconDecoder, LexiconSettings
from quantizer.manifest import load_audio, read_manifest
from quantizer.runtime import Recognizer, logit_scale

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import tree_memory_bytes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--beam", type=int, default=LexiconSettings().beam)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--language-model", default=str(SHIPPED_LANGUAGE_MODEL))
    args = parser.parse_args()

    model = IntegerModel.load(args.model)
    front_end = LogMelFrontEnd.of(model)
    recognizer = Recognizer(args.model, "integer", "cpu", args.threads)
    scale = logit_scale(model, "integer")
    decoders, built = {}, []
    searches = {
        "lexicon, unigram": LexiconSettings(beam=args.beam, language_model=""),
        "lexicon, n-gram": LexiconSettings(beam=args.beam, language_model=args.language_model),
        "lexicon, n-gram, search until session 24": LexiconSettings(
            beam=50, token_beam=len(model.labels) + 1, beam_threshold=25.0, language_model=args.language_model
        ),
    }
    for name, settings in searches.items():
        held, start = tree_memory_bytes(os.getpid()), time.perf_counter()
        decoders[name] = LexiconDecoder(model.labels, settings)
        added_mb = (tree_memory_bytes(os.getpid()) - held) / 2**20
        built.append(f"{name} in {time.perf_counter() - start:.1f} s, +{added_mb:.0f} MB")
    seconds = {"model": 0.0, "greedy": 0.0} | dict.fromkeys(decoders, 0.0)
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
        for name, decoder in decoders.items():
            start = time.perf_counter()
            decoder.best_path(frame_log_probabilities(logits, scale))
            seconds[name] += time.perf_counter() - start
    print(f"{args.utterances} utterances, {audio_s:.1f} s of audio; built (once per process): {'; '.join(built)}")
    print("| stage | seconds per audio second | x the model |")
    print("| --- | --- | --- |")
    for stage, total in seconds.items():
        print(f"| {stage} | {total / audio_s:.5f} | {total / seconds['model']:.2f} |")


if __name__ == "__main__":
    main()
