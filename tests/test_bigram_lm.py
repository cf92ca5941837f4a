import math
import shutil

import pytest

from quantizer.lexicon import SHIPPED_LANGUAGE_MODEL
from training.bigram_lm import (
    AUSTEN_NOVELS,
    count_bigrams,
    english_bigram,
    fetch_austen,
    main,
    prose_sentences,
    write_arpa,
)


def read_arpa(path):
    """{1: {word: (log10 p, log10 backoff)}, 2: {(v, w): log10 p}} from a plain ARPA file."""
    grams, order = {1: {}, 2: {}}, 0
    for line in path.read_text().splitlines():
        if line.startswith("\\") and line.endswith("-grams:"):
            order = int(line[1])
        elif order and line.strip() and not line.startswith("\\"):
            fields = line.split("\t")
            if order == 1:
                grams[1][fields[1]] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
            else:
                grams[2][tuple(fields[1].split())] = float(fields[0])
    return grams


def conditional(grams, history, word):
    """P(word | history) as an ARPA backoff model defines it."""
    if (history, word) in grams[2]:
        return 10 ** grams[2][(history, word)]
    return 10 ** (grams[1][history][1] + grams[1][word][0])


def test_prose_is_split_into_lower_case_sentences_of_two_words_or_more():
    text = 'Emma Woodhouse, handsome; clever, and rich.\n"Oh!" said she (quietly) -- it\'s true?'
    assert list(prose_sentences(text)) == [
        ["emma", "woodhouse", "handsome"],
        ["clever", "and", "rich"],
        ["said", "she"],
        ["it's", "true"],
    ]  # "oh" and "quietly" stand alone between punctuation, so they are dropped


def test_pairs_with_words_outside_the_vocabulary_are_not_counted():
    pairs, sentences, words = count_bigrams([["the", "zyzzyva", "sat"], ["the", "sat"]], {"<s>", "</s>", "the", "sat"})
    assert (sentences, words) == (2, 5)
    assert pairs == {("<s>", "the"): 2, ("the", "sat"): 1, ("sat", "</s>"): 2}


def test_every_history_gives_a_distribution_and_seen_pairs_are_discounted(tmp_path):
    vocabulary = ["the", "cat", "sat", "mat", "on"]
    unigram = {w: math.log(p) for w, p in zip([*vocabulary, "</s>"], [0.3, 0.1, 0.1, 0.1, 0.2, 0.2], strict=True)}
    sentences = [["the", "cat", "sat", "on", "the", "mat"], ["the", "cat", "sat"]]
    pairs, _, _ = count_bigrams(sentences, {"<s>", *unigram})
    path = tmp_path / "tiny.arpa"
    write_arpa(path, unigram, pairs, discount=0.5)
    grams = read_arpa(path)
    for history in ["<s>", "the", "cat", "sat", "on", "mat"]:
        total = sum(conditional(grams, history, w) for w in unigram)
        assert total == pytest.approx(1.0, abs=1e-5), history
    # c(the, cat) = 2 of c(the) = 3 with followers cat and mat: (2 - 0.5) / 3 + 0.5 * 2 / 3 * P(cat)
    assert conditional(grams, "the", "cat") == pytest.approx(1.5 / 3 + (1 / 3) * 0.1, rel=1e-5)
    assert conditional(grams, "the", "on") == pytest.approx((1 / 3) * 0.2, rel=1e-5)  # never seen: backs off


def test_english_unigrams_leave_room_for_the_sentence_end():
    unigram, pairs = english_bigram([["the", "end"], ["once", "more", "the", "end"]], words=2_000)
    assert sum(math.exp(p) for p in unigram.values()) == pytest.approx(1.0, abs=1e-4)
    assert math.exp(unigram["</s>"]) == pytest.approx(2 / 8)  # 2 sentences, 6 words
    assert pairs[("the", "end")] == 2


needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs Debian's apt-get to fetch the novels")


@needs_apt
def test_the_austen_package_gives_six_novels_as_text(tmp_path):
    novels = fetch_austen(tmp_path)
    assert sorted(novels) == sorted([*AUSTEN_NOVELS, "sensesensibility", "northangerabbey"])
    assert novels["emma"].startswith("EMMA") and "Emma Woodhouse, handsome, clever, and rich" in novels["emma"]
    assert 500_000 < sum(len(novels[n].split()) for n in AUSTEN_NOVELS) < 600_000  # words counted


@pytest.mark.slow
@needs_apt
@pytest.mark.skipif(shutil.which("bible") is None, reason="needs Debian's bible-kjv (make system-packages)")
def test_the_shipped_bigram_is_what_its_recipe_builds(tmp_path):
    rebuilt = tmp_path / "english-bigram.arpa.gz"
    main(["--out", str(rebuilt)])
    assert rebuilt.read_bytes() == SHIPPED_LANGUAGE_MODEL.read_bytes()


def test_text_without_vocabulary_words_is_refused(tmp_path):
    pairs, _, _ = count_bigrams([["zyzzyva", "quux"]], {"<s>", "</s>", "the"})
    with pytest.raises(ValueError, match="nothing to count"):
        write_arpa(tmp_path / "empty.arpa", {"the": 0.0}, pairs)
