"""Hotword phrases: the language-model boosts a lexicon search gives the words of listed phrases.

A single word is a phrase of one. Along a path, a phrase is matched word by word: a word that
continues the match extends it, any other word starts a new match (when a phrase begins with it) or
none. Each matched word gets part of its boost (PROVISIONAL) as it ends, so that the search keeps
the path while the phrase is being said, and the rest when the phrase is whole; a match that breaks
off, or that the path's end leaves unfinished, gives the parts back. Only the words of whole
phrases keep boosts, so a common word in a phrase ("new" in "new york") is favoured only where the
rest of the phrase follows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

PhraseState = tuple[int, int]  # (trie node, matched words of an unfinished phrase)
# Share of a word's boost given as it ends: a whole boost at once let wrong phrases' first words push
# other paths out of the beam (README, Hotwords: chosen on the tuning set among 1, 0.5 and 0).
PROVISIONAL = 0.5


class PhraseBoosts:
    """Phrases of word indices, each word worth `boost` (the language model's units) -> score changes."""

    START: PhraseState = (0, 0)

    def __init__(self, phrases: Iterable[Sequence[int]], boost: float):
        self.boost, self.provisional = boost, PROVISIONAL * boost
        self.children: list[dict[int, int]] = [{}]  # trie over words; node 0 is the root
        self.whole: list[bool] = [False]  # whether a node ends a phrase
        phrases = [list(phrase) for phrase in phrases]
        self.words = frozenset(word for phrase in phrases for word in phrase)  # all others leave START as it is
        for phrase in phrases:
            node = 0
            for word in phrase:
                if word not in self.children[node]:
                    self.children[node][word] = len(self.children)
                    self.children.append({})
                    self.whole.append(False)
                node = self.children[node][word]
            self.whole[node] = node != 0

    def step(self, state: PhraseState, word: int) -> tuple[PhraseState, float]:
        """The state after `word` ends on a path in `state`, and the score that word adds; START
        itself (`is`) when the path is back at the start."""
        node, pending = state
        following = self.children[node].get(word)
        if following is not None:
            score, pending = self.provisional, pending + 1
        else:
            following = self.children[0].get(word, 0)
            started = int(following != 0)
            score, pending = (started - pending) * self.provisional, started
        if self.whole[following]:
            score += pending * (self.boost - self.provisional)  # the phrase is whole: its words' full boosts
            pending = 0
            if not self.children[following]:
                following = 0  # nothing continues it, so the path is as free as at the start
        return ((following, pending) if following or pending else self.START), score

    def finish(self, state: PhraseState) -> float:
        """The score a path's end adds: an unfinished phrase's boosts given back."""
        return -state[1] * self.provisional
