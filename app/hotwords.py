"""Hotwords: lexicon words a request asks the lexicon search to favour (README, Hotwords)."""

from __future__ import annotations

import re

import numpy as np

from quantizer.lexicon import LexiconSettings, UnknownWords, lexicon_words

HOTWORD_LIMIT = 1000  # words per request
COMMON_WORDS = 5000  # a prompt's words among the lexicon's this many likeliest are not made hotwords
_SEPARATORS = re.compile(r"[\s,]+")


class HotwordLexicon:
    """The lexicon's words, to check a request's hotwords before any search and to pick a prompt's."""

    def __init__(self, labels: list[str], settings: LexiconSettings):
        words, log_probabilities, _ = lexicon_words(labels, settings)
        self.words = frozenset(words)
        likeliest = np.argsort(-log_probabilities, kind="stable")[:COMMON_WORDS]
        self.common = frozenset(words[i] for i in likeliest)
        spellable = "".join(sorted(set(labels) - {" "}))
        self._word = re.compile(f"[{re.escape(spellable)}]+")

    def checked(self, fields: list[str]) -> tuple[str, ...]:
        """`hotwords` fields, each words separated by commas or white space -> the words, lower-cased,
        each once, in order. UnknownWords for words outside the lexicon; ValueError past HOTWORD_LIMIT."""
        words = tuple(dict.fromkeys(w for field in fields for w in _SEPARATORS.split(field.lower()) if w))
        if len(words) > HOTWORD_LIMIT:
            raise ValueError(f"hotwords: {len(words)} words, at most {HOTWORD_LIMIT}")
        unknown = [word for word in words if word not in self.words]
        if unknown:
            raise UnknownWords(unknown)
        return words

    def from_prompt(self, prompt: str) -> tuple[str, ...]:
        """An OpenAI `prompt`'s words that the lexicon holds beyond its COMMON_WORDS likeliest (the
        names and terms a client lists there to steer spelling), lower-cased, each once, at most
        HOTWORD_LIMIT; other words are ignored."""
        found = (w.strip("'") for w in self._word.findall(prompt.lower()))
        rare = [w for w in dict.fromkeys(found) if w in self.words and w not in self.common]
        return tuple(rare[:HOTWORD_LIMIT])
