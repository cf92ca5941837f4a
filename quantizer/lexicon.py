"""CTC beam search over English words, scored by a unigram language model.

Greedy decoding spells whatever each frame's argmax says; at a small model's character error
rates most words come out misspelt. This beam search only lets the CTC path spell words of a
lexicon, the 100,000 most frequent English words of wordfreq, and adds lm_weight x ln(their
frequency) as each word ends. The search is flashlight-text's LexiconDecoder (C++); the language
model is a Python callback. The result is a CTC path, one class per frame, so anything that reads
greedy paths (words, their times and confidences) reads it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from flashlight.lib.text import decoder as flashlight

DECODERS = ("greedy", "lexicon")
UNKNOWN = "<unk>"
IMPOSSIBLE = -1e4  # log-probability of what a frame cannot emit


@dataclass(frozen=True)
class LexiconSettings:
    words: int = 100_000  # most frequent English words (wordfreq) that the labels can spell
    lm_weight: float = 0.6  # weight of ln P(word); chosen on real training speech, not on evaluation sets
    word_score: float = 0.0  # added per word: > 0 favours more, shorter words
    beam: int = 50  # hypotheses kept per frame
    beam_threshold: float = 25.0  # hypotheses this far (log-probability) below the best are dropped


def english_unigrams(labels: list[str], count: int) -> tuple[list[str], np.ndarray]:
    """The `count` most frequent English words that `labels` can spell, and ln P(word) [words]
    renormalised over them."""
    import wordfreq

    spellable = set(labels) - {" "}
    words = [w for w in wordfreq.top_n_list("en", count) if set(w) <= spellable]
    frequencies = np.array([wordfreq.word_frequency(w, "en") for w in words], np.float64)
    return words, np.log(frequencies / frequencies.sum()).astype(np.float32)


class _Unigram(flashlight.LM):
    """P(word) regardless of history: one state, so the beam merges paths that end in the same word."""

    def __init__(self, log_probabilities: np.ndarray):
        flashlight.LM.__init__(self)
        self.log_probabilities = log_probabilities.tolist()

    def start(self, start_with_nothing: bool) -> flashlight.LMState:
        return flashlight.LMState()

    def score(self, state: flashlight.LMState, word: int) -> tuple[flashlight.LMState, float]:
        return state, self.log_probabilities[word]

    def finish(self, state: flashlight.LMState) -> tuple[flashlight.LMState, float]:
        return state, 0.0


class LexiconDecoder:
    """Log-probabilities [T', classes] (blank last, as the models' labels + blank) -> CTC path [T']."""

    def __init__(self, labels: list[str], settings: LexiconSettings = LexiconSettings()):
        if " " not in labels:
            raise ValueError("lexicon decoding needs a space label between words")
        self.labels, self.settings = labels, settings
        self.space, self.blank = labels.index(" "), len(labels)
        words, log_probabilities = english_unigrams(labels, settings.words)
        self.words = words + [UNKNOWN]
        self.language_model = _Unigram(np.append(log_probabilities, -math.inf))
        self.trie = flashlight.Trie(len(labels) + 1, self.space)
        for index, word in enumerate(words):
            spelling = [labels.index(c) for c in word] + [self.space]
            self.trie.insert(spelling, index, float(log_probabilities[index]))
        self.trie.smear(flashlight.SmearingMode.MAX)

    @cached_property
    def _options(self) -> flashlight.LexiconDecoderOptions:
        s = self.settings
        return flashlight.LexiconDecoderOptions(
            beam_size=s.beam,
            beam_size_token=len(self.labels) + 1,
            beam_threshold=s.beam_threshold,
            lm_weight=s.lm_weight,
            word_score=s.word_score,
            unk_score=-math.inf,  # only lexicon words
            sil_score=0.0,
            log_add=False,
            criterion_type=flashlight.CriterionType.CTC,
        )

    def best_path(self, log_probabilities: np.ndarray) -> np.ndarray:
        """log_probabilities float [T', classes] -> the best lexicon-constrained CTC path, int64 [T']."""
        frames, classes = log_probabilities.shape
        if classes != len(self.labels) + 1:
            raise ValueError(f"expected {len(self.labels) + 1} classes per frame, got {classes}")
        if frames == 0:
            return np.zeros(0, np.int64)
        # The models' transcripts end without a space, but a word only ends in the lexicon's trie
        # at a space: a last frame that certainly emits one lets the final word end at no cost.
        word_end = np.full((1, classes), IMPOSSIBLE, np.float32)
        word_end[0, self.space] = 0.0
        emissions = np.ascontiguousarray(np.concatenate([log_probabilities, word_end]), dtype=np.float32)
        search = flashlight.LexiconDecoder(
            self._options, self.trie, self.language_model, self.space, self.blank, len(self.words) - 1, [], False
        )  # one per call: a search keeps its own hypotheses, so concurrent calls must not share one
        best = search.decode(emissions.ctypes.data, frames + 1, classes)[0]
        return np.asarray(best.tokens[1 : frames + 1], np.int64)  # drop the start and end sentinels
