"""Hotword phrases: what each word of a path adds, and what an unfinished phrase gives back."""

from __future__ import annotations

import pytest

from quantizer.hotword_phrases import PROVISIONAL, PhraseBoosts

NEW, YORK, TIMES, CITY, RED = range(5)
BOOST = 2.5
PART = PROVISIONAL * BOOST  # what a matched word gets at once
REST = BOOST - PART  # and each matched word when its phrase is whole


def walk(boosts: PhraseBoosts, words: list[int]) -> tuple[list[float], float]:
    """Each word's score along a path from the start, and what the path's end adds."""
    state, scores = PhraseBoosts.START, []
    for word in words:
        state, score = boosts.step(state, word)
        scores.append(score)
    return scores, boosts.finish(state)


@pytest.fixture
def boosts() -> PhraseBoosts:
    return PhraseBoosts([[NEW, YORK], [NEW, YORK, TIMES], [RED]], BOOST)


def test_a_whole_phrase_keeps_a_boost_for_each_of_its_words(boosts):
    assert 0 < PART < BOOST
    scores, end = walk(boosts, [CITY, NEW, YORK, CITY])
    assert scores == [0.0, PART, PART + 2 * REST, 0.0] and end == 0.0
    scores, end = walk(boosts, [NEW, YORK, TIMES])
    assert scores == [PART, PART + 2 * REST, BOOST] and end == 0.0


def test_a_phrase_that_breaks_off_or_is_left_unfinished_gives_its_boosts_back(boosts):
    scores, end = walk(boosts, [NEW, CITY])
    assert scores == [PART, -PART] and end == 0.0
    scores, end = walk(boosts, [NEW])
    assert scores == [PART] and end == -PART
    scores, end = walk(boosts, [NEW, YORK, TIMES, TIMES])  # a whole phrase's boosts stay
    assert sum(scores) + end == pytest.approx(3 * BOOST)


def test_a_word_that_breaks_a_match_may_start_the_next(boosts):
    scores, end = walk(boosts, [NEW, NEW, YORK])
    assert scores == [PART, 0.0, PART + 2 * REST] and end == 0.0  # the first "new" given back, the second kept
    assert sum(scores) == pytest.approx(2 * BOOST)
    scores, end = walk(boosts, [NEW, RED, RED])
    assert scores == [PART, BOOST - PART, BOOST] and end == 0.0


def test_a_single_word_gets_its_whole_boost_and_leaves_the_path_where_it_started(boosts):
    state, score = boosts.step(PhraseBoosts.START, RED)
    assert score == BOOST and state is PhraseBoosts.START  # so that the search can merge such paths
    assert boosts.words == {NEW, YORK, TIMES, RED}


def test_no_phrases_change_nothing():
    empty = PhraseBoosts([[]], BOOST)
    assert empty.words == frozenset() and walk(empty, [NEW, YORK]) == ([0.0, 0.0], 0.0)
    state, score = empty.step(PhraseBoosts.START, NEW)
    assert state is PhraseBoosts.START and score == 0.0
