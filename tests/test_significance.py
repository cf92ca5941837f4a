import jiwer
import numpy as np
import pytest

from quantizer.significance import paired_bootstrap_interval, word_errors

REFERENCES = ["the cat sat on the mat", "a dog barked", "it rained all day long", "yes"]


def test_word_errors_sum_to_jiwers_corpus_wer():
    hypotheses = ["the cat sad on mat", "a big dog barked", "it rained all day long", ""]
    edits, words = word_errors(REFERENCES, hypotheses)
    assert edits.tolist() == [2, 1, 0, 1]  # substitution + deletion; insertion; none; deletion
    assert words.tolist() == [6, 3, 5, 1]
    assert edits.sum() / words.sum() == pytest.approx(jiwer.wer(REFERENCES, hypotheses))


def test_identical_backends_have_a_zero_width_interval():
    edits = np.array([3, 0, 2, 5])
    words = np.array([10, 4, 8, 12])
    assert paired_bootstrap_interval(edits, edits, words) == (0.0, 0.0)


def test_a_consistently_worse_backend_is_distinguished_from_zero():
    rng = np.random.default_rng(1)
    words = rng.integers(5, 20, size=200)
    first = rng.binomial(words, 0.3)
    worse = first + 1  # one more error on every utterance
    low, high = paired_bootstrap_interval(first, worse, words, seed=3)
    point = (worse.sum() - first.sum()) / words.sum()
    assert 0 < low < point < high


def test_changes_that_go_both_ways_give_an_interval_around_zero():
    rng = np.random.default_rng(2)
    words = rng.integers(5, 20, size=100)
    first = rng.binomial(words, 0.3)
    flipped = first + rng.choice([-1, 1], size=100) * (first > 0)
    low, high = paired_bootstrap_interval(first, flipped, words)
    assert low < 0 < high
    assert paired_bootstrap_interval(first, flipped, words, seed=5) != (low, high)  # draws follow the seed


def test_mismatched_utterance_sets_are_refused():
    with pytest.raises(ValueError, match="same, non-empty"):
        paired_bootstrap_interval(np.array([1, 2]), np.array([1]), np.array([3, 4]))
