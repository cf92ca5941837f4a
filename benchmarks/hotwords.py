"""What hotwords do to the lexicon search's word errors: with the right words listed, and with wrong ones.

    .venv/bin/python benchmarks/hotwords.py --model DIR --manifest M [--manifest M2 ...]
        [--boost 11 ...] [--list-size 20] [--seed 0] [--jobs 2] [--vocabulary FILE] [--group-by FIELD] [--phrases]

DIR: a folder written by `qasr quantize`; the `integer` graph gives each utterance's log-probabilities
once. Each utterance gets two hotword lists of `--list-size` words, as a client that knows the
topic would send: "right" holds the rare words of its own reference (lexicon words outside the
COMMON_WORDS likeliest, the words `prompt` would pass on) padded with rare words of other
utterances; "wrong" holds only other utterances' rare words. For each boost the table gives the
WER with each list, the change against no hotwords with its 95 % paired bootstrap interval, and
how many of the references' rare words were found (bag of words per utterance). `--vocabulary`
adds a word list to the lexicon (QASR_VOCABULARY) for every row, "none" included. `--group-by`
(a manifest field, such as the speaker, who reads one book) adds "topic" lists: the rare words of
the other utterances of the same group, as a client that knows the book but not the sentence would
send them (they hold an utterance's own rare words only where those recur). `--phrases` adds lists
of two-word phrases, as a client would list names of several words: "right phrases" pair each rare
word of the reference with the word before it (or after it, for the first word), padded with other
utterances' phrases to `--list-size` phrases, "wrong phrases" are other utterances' only; each is
also decoded with its phrases split into single hotwords, which is what a phrase was before phrases.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

from app.hotwords import HotwordLexicon
from quantizer.ctc import frame_log_probabilities, greedy_text
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.integer_model import IntegerModel
from quantizer.lexicon import SHIPPED_LANGUAGE_MODEL, LexiconDecoder, LexiconSettings
from quantizer.manifest import load_utterance, read_manifest
from quantizer.runtime import Recognizer, logit_scale
from quantizer.significance import paired_bootstrap_interval, word_errors


def hotword_lists(
    references: list[str], lexicon: HotwordLexicon, size: int, seed: int
) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """Each reference's rare lexicon words, its "right" list and its "wrong" list (see the docstring)."""
    rare = [sorted({w for w in r.split() if w in lexicon.words and w not in lexicon.common}) for r in references]
    return rare, *right_and_wrong(rare, size, seed)


def right_and_wrong(own: list[list[str]], size: int, seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """Each utterance's own items -> its "right" list (them, padded with other utterances' items to
    `size`) and its "wrong" list (`size` of the other utterances' items)."""
    everyone = sorted({item for items in own for item in items})
    rng = random.Random(seed)
    right, wrong = [], []
    for items in own:
        others = [item for item in everyone if item not in items]
        right.append(items + rng.sample(others, max(size - len(items), 0)))
        wrong.append(rng.sample(others, min(size, len(others))))
    return right, wrong


def phrase_lists(
    references: list[str], lexicon: HotwordLexicon, size: int, seed: int
) -> tuple[list[list[str]], list[list[str]]]:
    """Each reference's "right phrases" and "wrong phrases" lists (see the docstring)."""
    own = []
    for reference in references:
        words = reference.split()
        pairs = {
            " ".join(words[i - 1 : i + 1] if i else words[:2])
            for i, w in enumerate(words)
            if w in lexicon.words and w not in lexicon.common and len(words) > 1
        }
        own.append(sorted(p for p in pairs if all(w in lexicon.words for w in p.split())))
    return right_and_wrong(own, size, seed)


def as_words(lists: list[list[str]]) -> list[list[str]]:
    """Lists of phrases -> lists of their words, each once: what phrases were before phrases."""
    return [list(dict.fromkeys(w for phrase in phrases for w in phrase.split())) for phrases in lists]


def topic_lists(rare: list[list[str]], groups: list[str]) -> list[list[str]]:
    """Each utterance's "topic" list: the rare words of the other utterances of its group (those that
    recur in its own count; the ones only it holds are not known to the list)."""
    return [
        sorted({w for j, words in enumerate(rare) if groups[j] == group and j != index for w in words})
        for index, group in enumerate(groups)
    ]


def decode_all(job: tuple) -> list[str]:
    """(labels, settings, log-probabilities per utterance, hotwords per utterance) -> texts."""
    labels, settings, scores, lists = job
    decoder = LexiconDecoder(labels, settings)
    return [greedy_text(decoder.best_path(lp, h), len(lp), labels) for lp, h in zip(scores, lists, strict=True)]


def found(references: list[str], hypotheses: list[str], rare: list[list[str]]) -> int:
    """How many of the references' rare words the hypotheses hold (bag of words per utterance)."""
    total = 0
    for reference, hypothesis, words in zip(references, hypotheses, rare, strict=True):
        have, want = Counter(hypothesis.split()), Counter(reference.split())
        total += sum(min(have[w], want[w]) for w in words)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", action="append", required=True)
    parser.add_argument("--boost", type=float, action="append")
    parser.add_argument("--list-size", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--language-model", default=str(SHIPPED_LANGUAGE_MODEL))
    parser.add_argument("--vocabulary", default="")
    parser.add_argument("--group-by", help="a manifest field: adds topic lists from the same group")
    parser.add_argument("--phrases", action="store_true", help="adds lists of two-word phrases")
    args = parser.parse_args()

    model = IntegerModel.load(args.model)
    front_end, recognizer = LogMelFrontEnd.of(model), Recognizer(args.model, "integer", "cpu", args.jobs)
    scale = logit_scale(model, "integer")
    utterances = [u for m in args.manifest for u in read_manifest(m, model.labels, group_by=args.group_by)]
    scores = []
    for utterance in utterances:
        result = recognizer(*front_end(*pad_audio([load_utterance(utterance)])), with_logits=True)
        scores.append(frame_log_probabilities(result.logits[0, :, : result.lengths[0]], scale))
    references = [u.text for u in utterances]
    base = LexiconSettings(language_model=args.language_model, vocabulary=args.vocabulary)
    lexicon = HotwordLexicon(model.labels, base)
    rare, right, wrong = hotword_lists(references, lexicon, args.list_size, args.seed)
    boosts = args.boost or [base.hotword_boost]
    conditions = {"right": right, "wrong": wrong}
    if args.group_by:
        conditions["topic"] = topic_lists(rare, [u.group for u in utterances])
    if args.phrases:
        right_phrases, wrong_phrases = phrase_lists(references, lexicon, args.list_size, args.seed)
        conditions["right phrases"], conditions["right phrases as words"] = right_phrases, as_words(right_phrases)
        conditions["wrong phrases"], conditions["wrong phrases as words"] = wrong_phrases, as_words(wrong_phrases)
    jobs = [(model.labels, base, scores, [[] for _ in scores])]
    for boost in boosts:
        settings = dataclasses.replace(base, hotword_boost=boost)
        jobs += [(model.labels, settings, scores, lists) for lists in conditions.values()]
    with ProcessPoolExecutor(args.jobs) as pool:
        texts = list(pool.map(decode_all, jobs))

    rare_count = sum(Counter(r.split())[w] for r, words in zip(references, rare, strict=True) for w in words)
    words = sum(len(r.split()) for r in references)
    print(
        f"{len(utterances)} utterances, {words} words; {rare_count} rare lexicon words in the references "
        f"({rare_count / len(utterances):.1f} per utterance); lists of {args.list_size} words"
    )
    print("| hotwords | boost | WER % | change | 95 % interval | rare words found |")
    print("| --- | --- | --- | --- | --- | --- |")
    plain_edits, counts = word_errors(references, texts[0])
    plain_wer = plain_edits.sum() / counts.sum()
    print(f"| none | - | {100 * plain_wer:.2f} | | | {found(references, texts[0], rare)} / {rare_count} |")
    for index, boost in enumerate(boosts):
        first = 1 + index * len(conditions)
        for name, hypotheses in zip(conditions, texts[first : first + len(conditions)], strict=True):
            edits, _ = word_errors(references, hypotheses)
            low, high = paired_bootstrap_interval(plain_edits, edits, counts)
            change = edits.sum() / counts.sum() - plain_wer
            print(
                f"| {name} | {boost:g} | {100 * edits.sum() / counts.sum():.2f} | {100 * change:+.2f} | "
                f"{100 * low:+.2f} .. {100 * high:+.2f} | {found(references, hypotheses, rare)} / {rare_count} |"
            )


if __name__ == "__main__":
    main()
