"""Hotwords: lexicon words a request asks the lexicon search to favour (README, Hotwords)."""

from __future__ import annotations

import re

import numpy as np

from quantizer.lexicon import LexiconSettings, UnknownWords, lexicon_words

HOTWORD_LIMIT = 1000  # words per request
COMMON_WORDS = 5000  # a prompt's words among the lexicon's this many likeliest are not made hotwords
_SEPARATORS = re.compile(r"[\s,]+")


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

    def _known(self, words: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [word for word in words if word not in self.words]
        if unknown:
            raise UnknownWords(unknown)
        return words

    def checked(self, fields: list[str]) -> tuple[str, ...]:
        """`hotwords` fields, each words separated by commas or white space -> the defaults and
        these words, lower-cased, each once, in order. UnknownWords for words outside the lexicon;
        ValueError past HOTWORD_LIMIT."""
        words = hotword_list(fields)
        if len(words) > HOTWORD_LIMIT:
            raise ValueError(f"hotwords: {len(words)} words, at most {HOTWORD_LIMIT}")
        return tuple(dict.fromkeys(self.defaults + self._known(words)))

    def from_prompt(self, prompt: str) -> tuple[str, ...]:
        """The defaults, and an OpenAI `prompt`'s words that the lexicon holds beyond its COMMON_WORDS
        likeliest (the names and terms a client lists there to steer spelling), lower-cased, each
        once, at most HOTWORD_LIMIT of the prompt's; its other words are ignored."""
        found = (w.strip("'") for w in self._word.findall(prompt.lower()))
        rare = [w for w in dict.fromkeys(found) if w in self.words and w not in self.common]
        return tuple(dict.fromkeys(self.defaults + tuple(rare[:HOTWORD_LIMIT])))


def hotword_list(fields: list[str]) -> tuple[str, ...]:
    """Fields of words separated by commas or white space -> the words, lower-cased, each once, in order."""
    return tuple(dict.fromkeys(w for field in fields for w in _SEPARATORS.split(field.lower()) if w))
