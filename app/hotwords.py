"""Hotwords: lexicon words and phrases a request asks the lexicon search to favour (README, Hotwords)."""

from __future__ import annotations

import re

import numpy as np

from quantizer.lexicon import LexiconSettings, UnknownWords, lexicon_words

HOTWORD_LIMIT = 1000  # words per request, those of phrases included
COMMON_WORDS = 5000  # a prompt's words among the lexicon's this many likeliest are not made hotwords
_SEPARATORS = re.compile(r"[\s,]+")
_TOKENS = re.compile(r"[A-Za-z']+|[^A-Za-z'\s]+")  # words, and what stands between them
_QUOTES = '"\u201c\u201d'  # straight and curly double quotes
# a quoted phrase, a word, or an unpaired quote:
_ITEMS = re.compile(f"[{_QUOTES}]([^{_QUOTES}]*)[{_QUOTES}]|([^\\s,{_QUOTES}]+)|[{_QUOTES}]")


class HotwordLexicon:
    """The lexicon's words, to check a request's hotwords before any search and to pick a prompt's;
    every request's list starts with the settings' own hotwords (QASR_HOTWORDS)."""

    def __init__(self, labels: list[str], settings: LexiconSettings):
        words, log_probabilities, _ = lexicon_words(labels, settings)
        self.words = frozenset(words)
        likeliest = np.argsort(-log_probabilities, kind="stable")[:COMMON_WORDS]
        self.common = frozenset(words[i] for i in likeliest)
        spellable = "".join(sorted(set(labels) - {" "}))
        self._word = re.compile(f"[{re.escape(spellable)}]+")
        try:
            self.defaults = self._known(settings.hotwords)
        except UnknownWords as error:
            raise ValueError(f"QASR_HOTWORDS: {error} (QASR_VOCABULARY adds words to it)") from None

    def _known(self, phrases: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [word for word in dict.fromkeys(" ".join(phrases).split()) if word not in self.words]
        if unknown:
            raise UnknownWords(unknown)
        return phrases

    def checked(self, fields: list[str]) -> tuple[str, ...]:
        """`hotwords` fields (hotword_list) -> the defaults and these words and phrases, lower-cased,
        each once, in order. UnknownWords for words outside the lexicon; ValueError for an unpaired
        quote or past HOTWORD_LIMIT words."""
        try:
            phrases = hotword_list(fields)
        except ValueError as error:
            raise ValueError(f"hotwords: {error}") from None
        words = sum(len(phrase.split()) for phrase in phrases)
        if words > HOTWORD_LIMIT:
            raise ValueError(f"hotwords: {words} words, at most {HOTWORD_LIMIT}")
        return tuple(dict.fromkeys(self.defaults + self._known(phrases)))

    def from_prompt(self, prompt: str) -> tuple[str, ...]:
        """The defaults, then an OpenAI `prompt`'s words that the lexicon holds beyond its COMMON_WORDS
        likeliest (the names and terms a client lists there to steer spelling), then its runs of
        capitalised lexicon words as phrases ("New York"); lower-cased, each once, at most
        HOTWORD_LIMIT words of the prompt's. Its other words are ignored."""
        found = (w.strip("'") for w in self._word.findall(prompt.lower()))
        rare = [w for w in dict.fromkeys(found) if w in self.words and w not in self.common]
        names = [run for run in capitalised_runs(prompt) if all(w in self.words for w in run.split())]
        chosen, words = [], 0
        for item in dict.fromkeys(rare + names):
            words += len(item.split())
            if words > HOTWORD_LIMIT:
                break
            chosen.append(item)
        return tuple(dict.fromkeys(self.defaults + tuple(chosen)))


def hotword_list(fields: list[str]) -> tuple[str, ...]:
    """Fields of words separated by commas or white space, where words in double quotes (straight or
    curly) make one phrase ("new york") -> the words and phrases (their words joined by one space), lower-cased,
    each once, in order. ValueError for a quote without its pair."""
    items = []
    for field in fields:
        for match in _ITEMS.finditer(field.lower()):
            phrase, word = match.groups()
            if phrase is None and word is None:
                raise ValueError(f"a double quote without its pair in {field[:80]!r}")
            items.append(word or " ".join(w for w in _SEPARATORS.split(phrase) if w))
    return tuple(dict.fromkeys(item for item in items if item))


def capitalised_runs(text: str) -> list[str]:
    """Runs of two or more capitalised words in `text`, with nothing but white space between them
    (names such as "New York"), lower-cased, in order. A run that starts a sentence comes also
    without its first word, which may be capitalised only for that ("Yesterday Jane Austen")."""
    runs, run = [], []
    starts_sentence = run_starts_sentence = True
    for token in [*_TOKENS.findall(text), "."]:
        word = token.strip("'")
        if word[:1].isupper():
            if not run:
                run_starts_sentence = starts_sentence
            run.append(word.lower())
            starts_sentence = False
            continue
        if len(run) > 1:
            runs.append(" ".join(run))
        if len(run) > 2 and run_starts_sentence:
            runs.append(" ".join(run[1:]))
        run, starts_sentence = [], token[-1] in ".!?:;"
    return runs
