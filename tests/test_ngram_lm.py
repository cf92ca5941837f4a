import math
import shutil

import pytest

from quantizer.lexicon import SHIPPED_LANGUAGE_MODEL
from training.ngram_lm import (
    AUSTEN_NOVELS,
    count_ngrams,
    english_ngrams,
    fetch_austen,
    main,
    prose_sentences,
    write_arpa,
)


def read_arpa(path):
    """{n: {word tuple: (log10 p, log10 backoff)}} from a plain ARPA file."""
    grams, order = {}, 0
    for line in path.read_text().splitlines():
        if line.startswith("\\") and line.endswith("-grams:"):
            order = int(line[1])
            grams[order] = {}
        elif order and line.strip() and not line.startswith("\\"):
            fields = line.split("\t")
            grams[order][tuple(fields[1].split())] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
    return grams


def conditional(grams, history, word):
    """P(word | history) as an ARPA backoff model defines it; history a tuple of words."""
    gram = (*history, word)
    if gram in grams[len(gram)]:
        return 10 ** grams[len(gram)][gram][0]
    backoff = grams[len(history)].get(history, (0.0, 0.0))[1]
    return 10**backoff * conditional(grams, history[1:], word)


def test_prose_is_split_into_lower_case_sentences_of_two_words_or_more():
    text = 'Emma Woodhouse, handsome; clever, and rich.\n"Oh!" said she (quietly) -- it\'s true?'
    assert list(prose_sentences(text)) == [
        ["emma", "woodhouse", "handsome"],
        ["clever", "and", "rich"],
        ["said", "she"],
        ["it's", "true"],
    ]  # "oh" and "quietly" stand alone between punctuation, so they are dropped


def test_ngrams_with_words_outside_the_vocabulary_are_not_counted():
    vocabulary = {"<s>", "</s>", "the", "sat"}
    counts, sentences, words = count_ngrams([["the", "zyzzyva", "sat"], ["the", "sat"]], vocabulary, order=3)
    assert (sentences, words) == (2, 5)
    assert counts[2] == {("<s>", "the"): 2, ("the", "sat"): 1, ("sat", "</s>"): 2}
    assert counts[3] == {("<s>", "the", "sat"): 1, ("the", "sat", "</s>"): 1}


@pytest.mark.parametrize("order", [2, 3])
def test_every_history_gives_a_distribution_and_seen_ngrams_are_discounted(tmp_path, order):
    vocabulary = ["the", "cat", "sat", "mat", "on"]
    unigram = {w: math.log(p) for w, p in zip([*vocabulary, "</s>"], [0.3, 0.1, 0.1, 0.1, 0.2, 0.2], strict=True)}
    sentences = [["the", "cat", "sat", "on", "the", "mat"], ["the", "cat", "sat"]]
    counts, _, _ = count_ngrams(sentences, {"<s>", *unigram}, order)
    path = tmp_path / "tiny.arpa"
    write_arpa(path, unigram, counts, discount=0.5)
    grams = read_arpa(path)
    histories = [("<s>",), *[(w,) for w in vocabulary], ("<s>", "the"), ("the", "cat"), ("on", "the"), ("sat", "the")]
    for history in histories:
        total = sum(conditional(grams, history[-(order - 1) :], w) for w in unigram)
        assert total == pytest.approx(1.0, abs=1e-5), history
    # c(the, cat) = 2 of c(the) = 3 with followers cat and mat: (2 - 0.5) / 3 + 0.5 * 2 / 3 * P(cat)
    the_cat = 1.5 / 3 + (1 / 3) * 0.1
    assert conditional(grams, ("the",), "cat") == pytest.approx(the_cat, rel=1e-5)
    assert conditional(grams, ("the",), "on") == pytest.approx((1 / 3) * 0.2, rel=1e-5)  # never seen: backs off
    if order == 3:  # c(<s> the cat) = 2 of c(<s> the) = 2, one follower: (2 - 0.5) / 2 + 0.5 / 2 * P(cat | the)
        assert conditional(grams, ("<s>", "the"), "cat") == pytest.approx(1.5 / 2 + 0.25 * the_cat, rel=1e-5)


def test_english_unigrams_leave_room_for_the_sentence_end():
    unigram, counts = english_ngrams([["the", "end"], ["once", "more", "the", "end"]], order=3, words=2_000)
    assert sum(math.exp(p) for p in unigram.values()) == pytest.approx(1.0, abs=1e-4)
    assert math.exp(unigram["</s>"]) == pytest.approx(2 / 8)  # 2 sentences, 6 words
    assert counts[2][("the", "end")] == 2 and counts[3][("the", "end", "</s>")] == 2


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
def test_the_shipped_trigram_is_what_its_recipe_builds(tmp_path):
    rebuilt = tmp_path / "english-trigram.arpa.gz"
    main(["--out", str(rebuilt)])
    assert rebuilt.read_bytes() == SHIPPED_LANGUAGE_MODEL.read_bytes()


def test_text_without_vocabulary_words_is_refused(tmp_path):
    counts, _, _ = count_ngrams([["zyzzyva", "quux"]], {"<s>", "</s>", "the"}, order=2)
    with pytest.raises(ValueError, match="nothing to count"):
        write_arpa(tmp_path / "empty.arpa", {"the": 0.0}, counts)
    with pytest.raises(ValueError, match="order must be 2 or more"):
        count_ngrams([["the"]], {"the"}, order=1)
