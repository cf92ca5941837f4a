"""CTC beam search over English words, scored by a word language model.

Greedy decoding spells whatever each frame's argmax says; at a small model's character error
rates most words come out misspelt. This beam search only lets the CTC path spell words of a
lexicon and adds lm_weight x ln P(word | previous words) as each word ends. The lexicon and its
language model are either an ARPA n-gram file (KenLM reads .arpa and .arpa.gz; its words are the
lexicon) or, without one, the 100,000 most frequent English words of wordfreq with their
frequencies as a unigram model; a vocabulary file adds words to either. A search may be given
hotwords, lexicon words or phrases whose words' language-model probabilities it raises
(PhraseBoosts). The search is flashlight-text's LexiconDecoder (C++). The result is a CTC path, one
class per frame, so anything that reads greedy paths (words, their times and confidences) reads it too.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from flashlight.lib.text import decoder as flashlight
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary
from numpy.lib.stride_tricks import sliding_window_view

from quantizer.hotword_phrases import PhraseBoosts, PhraseState

DECODERS = ("greedy", "lexicon")
UNKNOWN = "<unk>"
ARPA_MARKERS = {"<s>", "</s>", UNKNOWN}
# The project's word trigram (training/ngram_lm.py); present in a checkout, not in an installed wheel.
SHIPPED_LANGUAGE_MODEL = Path(__file__).resolve().parent.parent / "models" / "english-trigram.arpa.gz"
IMPOSSIBLE = -1e4  # log-probability of what a frame cannot emit


@dataclass(frozen=True)
class LexiconSettings:
    words: int = 100_000  # most frequent English words (wordfreq) that the labels can spell; unused with an ARPA
    lm_weight: float = 0.6  # weight of ln P(word); chosen on real training speech, not on evaluation sets
    word_score: float = 0.0  # added per word: > 0 favours more, shorter words
    # The search's breadth, chosen on held-out synthetic speech kept for tuning (README, Decoding):
    beam: int = 400  # hypotheses kept per frame
    token_beam: int = 10  # most likely classes each hypothesis may extend by, per frame
    beam_threshold: float = 15.0  # hypotheses this far (log-probability) below the best are dropped
    language_model: str = ""  # ARPA n-gram file (.arpa or .arpa.gz); "": wordfreq unigrams
    # A search keeps every frame's hypotheses until it ends (about 100 MB per minute of audio at
    # beam 400), so longer inputs are searched in pieces cut at pauses (see pause_cuts):
    max_frames: int = 1500  # longest piece searched at once (30 s at the models' 20 ms frames)
    vocabulary: str = ""  # text file of words to add to the lexicon, one per line; "": none
    # A request's hotwords are made this much likelier (ln of the factor) to the language model
    # whenever the search ends one; chosen on held-out synthetic speech kept for tuning (README, Hotwords):
    hotword_boost: float = 11.0
    hotwords: tuple[str, ...] = ()  # lexicon words every search favours, besides each search's own


def english_unigrams(labels: list[str], count: int) -> tuple[list[str], np.ndarray]:
    """The `count` most frequent English words that `labels` can spell, and ln P(word) [words]
    renormalised over them."""
    import wordfreq

    spellable = set(labels) - {" "}
    words = [w for w in wordfreq.top_n_list("en", count) if set(w) <= spellable]
    frequencies = np.array([wordfreq.word_frequency(w, "en") for w in words], np.float64)
    return words, np.log(frequencies / frequencies.sum()).astype(np.float32)


def vocabulary_words(path: str | Path, labels: list[str]) -> list[str]:
    """A vocabulary file's words in order, lower-cased: one per line; blank lines and lines that
    start with # are skipped. ValueError names a line whose word `labels` cannot spell."""
    spellable = set(labels) - {" "}
    words = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        word = line.strip().lower()
        if not word or word.startswith("#"):
            continue
        if not set(word) <= spellable:
            strange = "".join(sorted(set(word) - spellable))
            raise ValueError(f"{path}, line {number}: {word!r} has characters the model cannot spell: {strange!r}")
        words.append(word)
    return words


def lexicon_words(labels: list[str], settings: LexiconSettings) -> tuple[list[str], np.ndarray, int]:
    """The lexicon: the language model's words, then the vocabulary file's words it lacks, with
    ln P(word) [words] (a new word as likely as the language model's rarest), and how many words
    come from the language model."""
    if settings.language_model:
        words, log_probabilities = arpa_unigrams(settings.language_model, labels)
    else:
        words, log_probabilities = english_unigrams(labels, settings.words)
    known = len(words)
    if settings.vocabulary:
        present = set(words)
        new = [w for w in dict.fromkeys(vocabulary_words(settings.vocabulary, labels)) if w not in present]
        words = words + new
        log_probabilities = np.append(log_probabilities, np.full(len(new), log_probabilities.min(), np.float32))
    return words, log_probabilities, known


class UnknownWords(ValueError):
    """Hotwords that are not in the lexicon, so that no search can find them; the message names
    the first few."""

    SHOWN = 10

    def __init__(self, words: list[str]):
        self.words = words
        shown = ", ".join(word[:40] for word in words[: self.SHOWN])
        more = f" and {len(words) - self.SHOWN} more" if len(words) > self.SHOWN else ""
        super().__init__(f"not in the lexicon: {shown}{more}")


def _arpa_lines(path: str | Path) -> Iterator[tuple[str, str]]:
    """(section, line) for each non-empty line of an ARPA file, plain or gzipped."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as arpa:
        section = ""
        for line in arpa:
            if line.startswith("\\"):
                section = line.strip()
            elif line.strip():
                yield section, line


def arpa_order(path: str | Path) -> int:
    """The highest n of an ARPA file's n-grams, from its \\data\\ header."""
    order = 0
    for section, line in _arpa_lines(path):
        if section != "\\data\\":
            break
        order = max(order, int(line.split("=")[0].split()[-1]))
    if order == 0:
        raise ValueError(f"{path}: not an ARPA file (no \\data\\ header with ngram counts)")
    return order


def arpa_unigrams(path: str | Path, labels: list[str]) -> tuple[list[str], np.ndarray]:
    """The words of an ARPA file's 1-gram section that `labels` can spell, and their ln P [words]."""
    spellable = set(labels) - {" "}
    words, log10_probabilities = [], []
    for section, line in _arpa_lines(path):
        if section == "\\1-grams:":
            fields = line.split()
            if fields[1] not in ARPA_MARKERS and set(fields[1]) <= spellable:
                words.append(fields[1])
                log10_probabilities.append(float(fields[0]))
        elif words:
            break
    if not words:
        raise ValueError(f"{path}: no 1-grams that the model's labels can spell")
    return words, np.array(log10_probabilities, np.float32) * np.float32(math.log(10))


PAUSE_FRAMES = 8  # a cut's neighbours on each side that must look like silence too


def pause_surroundings(log_probabilities: np.ndarray, blank: int, space: int) -> np.ndarray:
    """Frames [T', classes] -> how surely each one's surroundings (PAUSE_FRAMES either side) are
    silence (blank or space) [T']: their least log-probability of it; -inf within PAUSE_FRAMES of an
    end, past which nothing is known."""
    silence = np.logaddexp(log_probabilities[:, blank], log_probabilities[:, space])  # [T']
    if not len(silence):
        return silence
    edge = np.full(PAUSE_FRAMES, -np.inf)
    padded = np.concatenate([edge, silence, edge])
    return sliding_window_view(padded, 2 * PAUSE_FRAMES + 1).min(axis=1)


def pause_cuts(log_probabilities: np.ndarray, blank: int, space: int, longest: int) -> list[int]:
    """Frames [T', classes] -> where to cut them into pieces of at most `longest` frames: in the last
    three quarters of each piece's span, the frame whose surroundings (PAUSE_FRAMES either side) are
    most surely silence (blank or space), the latest of equals, so that a cut falls between words,
    not inside one, and pieces stay long."""
    frames = len(log_probabilities)
    if frames <= longest:
        return []
    surroundings = pause_surroundings(log_probabilities, blank, space)
    cuts, start = [], 0
    while frames - start > longest:
        cuts.append(_best_pause(surroundings, start, longest))
        start = cuts[-1]
    return cuts


def _cut_span(start: int, longest: int) -> tuple[int, int]:
    """The first and last frame where the piece from frame `start` may end: its span's last three quarters."""
    return start + max(longest // 4, 1), start + longest


def _best_pause(surroundings: np.ndarray, start: int, longest: int) -> int:
    """pause_cuts' choice for the piece from frame `start`: its span's most silent frame, the latest of equals."""
    first, last = _cut_span(start, longest)
    return last - int(np.argmax(surroundings[first : last + 1][::-1]))


def early_pause_cuts(
    log_probabilities: np.ndarray, blank: int, space: int, longest: int, certainty: float
) -> list[int]:
    """The first frames [T', classes] of a stream -> cuts the frames still to come cannot change, each
    as early as it can be: in the last three quarters of a piece's span, the first frame whose
    surroundings are silence with log-probability `certainty` or more (a pause worth ending a piece
    at); none by the span's end, pause_cuts' choice once the frames reach PAUSE_FRAMES past it."""
    surroundings = pause_surroundings(log_probabilities, blank, space)
    cuts, start = [], 0
    while True:
        first, last = _cut_span(start, longest)
        sure = np.flatnonzero(surroundings[first : last + 1] >= certainty)
        if len(sure):
            cuts.append(first + int(sure[0]))
        elif last + PAUSE_FRAMES < len(log_probabilities):
            cuts.append(_best_pause(surroundings, start, longest))
        else:
            return cuts
        start = cuts[-1]


def settled_pause_cuts(log_probabilities: np.ndarray, blank: int, space: int, longest: int) -> list[int]:
    """The first frames [T', classes] of a longer input -> those of its pause_cuts that the frames
    still to come cannot change: each cut is chosen from frames up to PAUSE_FRAMES past its span."""
    cuts = pause_cuts(log_probabilities, blank, space, longest)
    starts = [0, *cuts][: len(cuts)]  # where the piece each cut ends begins
    known = len(log_probabilities)
    return [cut for start, cut in zip(starts, cuts, strict=True) if start + longest + PAUSE_FRAMES < known]


def pieces_at_pauses(log_probabilities: np.ndarray, blank: int, space: int, longest: int) -> list[np.ndarray]:
    """[T', classes] -> consecutive pieces of at most `longest` frames, cut at pauses (one piece if short)."""
    return np.split(log_probabilities, pause_cuts(log_probabilities, blank, space, longest))


def joined_paths(paths: list[np.ndarray], blank: int, space: int) -> np.ndarray:
    """The pieces' paths [T'_i] -> one path [sum T'_i]. Each piece's last word ended with its search,
    so where pieces meet, a blank becomes a space to keep that word apart from the next piece's first."""
    path = np.concatenate(paths)
    for cut in np.cumsum([len(p) for p in paths[:-1]]):
        if space in path[cut - 1 : cut + 1]:
            continue  # already apart
        at = cut if path[cut] == blank else cut - 1
        if path[at] == blank:
            path[at] = space
    return path


class _Unigram(flashlight.LM):
    """P(word) regardless of history, with a search's hotword phrases: one state per phrase state,
    so the beam merges paths that end in the same word outside a phrase."""

    def __init__(self, log_probabilities: list[float], phrases: PhraseBoosts):
        flashlight.LM.__init__(self)
        self.log_probabilities, self.phrases = log_probabilities, phrases
        self.root = flashlight.LMState()
        self.states: dict[PhraseState, flashlight.LMState] = {}
        self.inner: dict[flashlight.LMState, PhraseState] = {}

    def start(self, start_with_nothing: bool) -> flashlight.LMState:
        self.states, self.inner = {PhraseBoosts.START: self.root}, {self.root: PhraseBoosts.START}
        return self.root

    def score(self, state: flashlight.LMState, word: int) -> tuple[flashlight.LMState, float]:
        phrase_state = self.inner[state]
        if phrase_state is PhraseBoosts.START and word not in self.phrases.words:
            return state, self.log_probabilities[word]  # the phrases change nothing
        phrase_state, boost = self.phrases.step(phrase_state, word)
        following = self.states.get(phrase_state)
        if following is None:
            following = self.states[phrase_state] = self.root.child(len(self.states))
            self.inner[following] = phrase_state
        return following, self.log_probabilities[word] + boost

    def finish(self, state: flashlight.LMState) -> tuple[flashlight.LMState, float]:
        return state, self.phrases.finish(self.inner[state])


class _RecentWords(flashlight.LM):
    """An n-gram's scores from KenLM, with one state per last (n - 1) words for one search.

    flashlight's KenLM keeps one state per whole word history, so the beam fills with paths that
    differ only in words the n-gram no longer sees; sharing their state lets the search merge them.
    Words from `known` on are not the n-gram's (a vocabulary file's): each scores as the word `rarest`
    would in its place. phrases: a search's hotword phrases, whose boosts (log10, as KenLM's) add to
    the scores; a path inside a phrase keeps a state of its own."""

    def __init__(self, kenlm: flashlight.LM, order: int, known: int, rarest: int, phrases: PhraseBoosts):
        flashlight.LM.__init__(self)
        self.kenlm, self.context = kenlm, max(order - 1, 0)
        self.known, self.rarest, self.phrases = known, rarest, phrases
        self.root = flashlight.LMState()
        # keyed by the recent words, and by (them, the phrase state) where that is not START:
        self.states: dict[tuple, flashlight.LMState] = {}
        self.inner: dict[flashlight.LMState, tuple[tuple[int, ...], PhraseState, flashlight.LMState]] = {}
        self.scored: dict[tuple[flashlight.LMState, int], tuple[flashlight.LMState, float]] = {}

    def start(self, start_with_nothing: bool) -> flashlight.LMState:
        self.states = {(): self.root}
        self.inner = {self.root: ((), PhraseBoosts.START, self.kenlm.start(start_with_nothing))}
        self.scored = {}
        return self.root

    def score(self, state: flashlight.LMState, word: int) -> tuple[flashlight.LMState, float]:
        known = self.scored.get((state, word))  # the beam asks the same few states for the same words each frame
        if known is not None:
            return known
        history, phrase_state, inner = self.inner[state]
        inner_next, score = self.kenlm.score(inner, word if word < self.known else self.rarest)
        if phrase_state is not PhraseBoosts.START or word in self.phrases.words:  # else the phrases change nothing
            phrase_state, boost = self.phrases.step(phrase_state, word)
            score += boost
        recent = (*history, word)[-self.context :] if self.context else ()
        key = recent if phrase_state is PhraseBoosts.START else (recent, phrase_state)
        merged = self.states.get(key)
        if merged is None:
            merged = self.states[key] = self.root.child(len(self.states))
            self.inner[merged] = (recent, phrase_state, inner_next)
        self.scored[state, word] = merged, score
        return merged, score

    def finish(self, state: flashlight.LMState) -> tuple[flashlight.LMState, float]:
        history, phrase_state, inner = self.inner[state]
        return state, self.kenlm.finish(inner)[1] + self.phrases.finish(phrase_state)


class LexiconDecoder:
    """Log-probabilities [T', classes] (blank last, as the models' labels + blank) -> CTC path [T']."""

    def __init__(self, labels: list[str], settings: LexiconSettings = LexiconSettings()):
        if " " not in labels:
            raise ValueError("lexicon decoding needs a space label between words")
        self.labels, self.settings = labels, settings
        self.space, self.blank = labels.index(" "), len(labels)
        words, log_probabilities, self.known = lexicon_words(labels, settings)
        self.words = words + [UNKNOWN]
        self.index = {word: index for index, word in enumerate(words)}
        if settings.language_model:
            self.kenlm = KenLM(settings.language_model, Dictionary(self.words))  # new words map to KenLM's <unk>
            self.order = arpa_order(settings.language_model)
            self.lm_scale = math.log(10)  # KenLM scores in log10, and so must the trie; lm_weight weighs ln
            self.rarest = int(np.argmin(log_probabilities[: self.known]))  # stands in for new words
        else:
            self.unigram_scores = np.append(log_probabilities, -math.inf).tolist()
            self.lm_scale = 1.0
        self.trie = flashlight.Trie(len(labels) + 1, self.space)
        label_index = {label: index for index, label in enumerate(labels)}
        for index, word in enumerate(words):
            spelling = [label_index[c] for c in word] + [self.space]
            self.trie.insert(spelling, index, float(log_probabilities[index]) / self.lm_scale)
        self.trie.smear(flashlight.SmearingMode.MAX)
        self.phrases(settings.hotwords)  # UnknownWords now rather than at the first search

    def phrases(self, hotwords: Iterable[str]) -> PhraseBoosts:
        """Hotwords (phrases of words separated by spaces), with settings.hotwords -> their boosts
        (settings.hotword_boost per word, in the language model's units); UnknownWords for words not
        in the lexicon."""
        phrases = list(dict.fromkeys(" ".join(p.lower().split()) for p in (*self.settings.hotwords, *hotwords)))
        words = [word for phrase in phrases for word in phrase.split()]
        unknown = list(dict.fromkeys(word for word in words if word not in self.index))
        if unknown:
            raise UnknownWords(unknown)
        indices = [[self.index[word] for word in phrase.split()] for phrase in phrases]
        return PhraseBoosts(indices, self.settings.hotword_boost / self.lm_scale)

    def _language_model(self, phrases: PhraseBoosts) -> flashlight.LM:
        """The language model for one search: it keeps state per search."""
        if self.settings.language_model:
            return _RecentWords(self.kenlm, self.order, self.known, self.rarest, phrases)
        return _Unigram(self.unigram_scores, phrases)

    @cached_property
    def _options(self) -> flashlight.LexiconDecoderOptions:
        s = self.settings
        return flashlight.LexiconDecoderOptions(
            beam_size=s.beam,
            beam_size_token=min(s.token_beam, len(self.labels) + 1),
            beam_threshold=s.beam_threshold,
            lm_weight=s.lm_weight * self.lm_scale,
            word_score=s.word_score,
            unk_score=-math.inf,  # only lexicon words
            sil_score=0.0,
            log_add=False,
            criterion_type=flashlight.CriterionType.CTC,
        )

    def best_path(self, log_probabilities: np.ndarray, hotwords: Sequence[str] = ()) -> np.ndarray:
        """log_probabilities float [T', classes] -> the best lexicon-constrained CTC path, int64 [T'];
        hotwords: lexicon words or phrases made likelier (PhraseBoosts), UnknownWords for others."""
        return joined_paths(list(self.piece_paths(log_probabilities, hotwords)), self.blank, self.space)

    def piece_paths(self, log_probabilities: np.ndarray, hotwords: Sequence[str] = ()) -> Iterator[np.ndarray]:
        """log_probabilities float [T', classes] -> the paths of its pieces (pieces_at_pauses) in order,
        each searched when asked for; each piece's path ends its last word. hotwords: as best_path."""
        phrases = self.phrases(hotwords)
        frames, classes = log_probabilities.shape
        if classes != len(self.labels) + 1:
            raise ValueError(f"expected {len(self.labels) + 1} classes per frame, got {classes}")
        if frames == 0:
            return iter([np.zeros(0, np.int64)])
        pieces = pieces_at_pauses(log_probabilities, self.blank, self.space, self.settings.max_frames)
        return (self._search(piece, phrases) for piece in pieces)

    def _search(self, log_probabilities: np.ndarray, phrases: PhraseBoosts) -> np.ndarray:
        """One search over [T' >= 1, classes] -> its path [T']."""
        frames, classes = log_probabilities.shape
        # The models' transcripts end without a space, but a word only ends in the lexicon's trie
        # at a space: a last frame that certainly emits one lets the final word end at no cost.
        word_end = np.full((1, classes), IMPOSSIBLE, np.float32)
        word_end[0, self.space] = 0.0
        emissions = np.ascontiguousarray(np.concatenate([log_probabilities, word_end]), dtype=np.float32)
        language_model = self._language_model(phrases)  # referenced here until the search is done with it
        search = flashlight.LexiconDecoder(
            self._options, self.trie, language_model, self.space, self.blank, len(self.words) - 1, [], False
        )  # one per call: a search keeps its own hypotheses, so concurrent calls must not share one
        best = search.decode(emissions.ctypes.data, frames + 1, classes)[0]
        return np.asarray(best.tokens[1 : frames + 1], np.int64)  # drop the start and end sentinels
