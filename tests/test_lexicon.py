import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest

from quantizer.ctc import greedy_text, log_softmax
from quantizer.hotword_phrases import PhraseBoosts
from quantizer.lexicon import (
    LexiconDecoder,
    LexiconSettings,
    UnknownWords,
    early_pause_cuts,
    english_unigrams,
    joined_paths,
    pause_cuts,
    settled_pause_cuts,
    vocabulary_words,
)
from quantizer.nemo_configs import ENGLISH_LABELS

BLANK = len(ENGLISH_LABELS)
LIKELY, UNLIKELY = 0.0, -8.0  # logits


@pytest.fixture(scope="module")
def decoder():
    return LexiconDecoder(ENGLISH_LABELS, LexiconSettings(words=20_000))


def frames_spelling(*frames: dict[str, float]) -> np.ndarray:
    """Log-probabilities [T', classes]: each frame gives its listed labels ('-' is blank) these logits."""
    logits = np.full((len(frames), BLANK + 1), UNLIKELY, np.float32)
    for t, choices in enumerate(frames):
        for label, logit in choices.items():
            logits[t, BLANK if label == "-" else ENGLISH_LABELS.index(label)] = logit
    return log_softmax(logits)


def spell(text: str) -> list[dict[str, float]]:
    """One confident frame per character, a blank between repeated letters."""
    frames = []
    for i, c in enumerate(text):
        if i and text[i - 1] == c:
            frames.append({"-": LIKELY})
        frames.append({c: LIKELY})
    return frames + [{"-": LIKELY}]


def text_of(decoder: LexiconDecoder, log_probabilities: np.ndarray, hotwords: Sequence[str] = ()) -> str:
    path = decoder.best_path(log_probabilities, hotwords)
    assert path.shape == (len(log_probabilities),)
    return " ".join(greedy_text(path, len(path), ENGLISH_LABELS).split())


def test_english_unigrams_are_spellable_and_a_distribution():
    words, log_probabilities = english_unigrams(ENGLISH_LABELS, 5_000)
    assert words[0] == "the" and len(words) > 4_000
    assert all(set(w) <= set(ENGLISH_LABELS) - {" "} for w in words)
    assert np.exp(log_probabilities.astype(np.float64)).sum() == pytest.approx(1.0)
    assert (np.diff(log_probabilities) <= 1e-6).all()  # most frequent first


def test_confidently_spelt_words_come_out_as_they_are(decoder):
    frames = frames_spelling(*spell("good morning"))
    assert text_of(decoder, frames) == "good morning"
    assert greedy_text(frames.argmax(1), len(frames), ENGLISH_LABELS) == "good morning"


def the_cat_with_a_near_miss() -> np.ndarray:
    """'the cat' where the e's frame prefers w a little: the second-best letter makes the word."""
    return frames_spelling(*spell("th")[:-1], {"w": LIKELY, "e": LIKELY - 0.5}, *spell(" cat"))


def test_a_near_miss_becomes_the_word_greedy_decoding_misspells(decoder):
    frames = the_cat_with_a_near_miss()
    assert greedy_text(frames.argmax(1), len(frames), ENGLISH_LABELS) == "thw cat"
    assert text_of(decoder, frames) == "the cat"


def test_the_token_beam_limits_a_frame_to_its_most_likely_classes():
    """With one class per frame the search cannot take the second-best letter the lexicon needs."""
    frames = the_cat_with_a_near_miss()
    narrow = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(words=20_000, token_beam=1))
    wide = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(words=20_000, token_beam=2))
    assert text_of(wide, frames) == "the cat"
    assert text_of(narrow, frames) != "the cat"


def test_the_language_model_outweighs_a_small_acoustic_preference_for_a_rare_word():
    frames = frames_spelling({"t": LIKELY}, {"h": LIKELY}, {"y": LIKELY, "e": LIKELY - 0.5}, {"-": LIKELY})
    acoustic_only = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(words=20_000, lm_weight=0.0))
    weighted = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(words=20_000, lm_weight=0.5))
    assert text_of(acoustic_only, frames) == "thy"
    assert text_of(weighted, frames) == "the"


def test_the_last_word_ends_without_a_space_frame(decoder):
    """Transcripts end without a space, so the model emits none after the last word."""
    frames = frames_spelling(*spell("hello world")[:-1])  # the last frame emits the final d
    assert text_of(decoder, frames) == "hello world"


def test_no_frames_give_no_path_and_wrong_class_counts_are_refused(decoder):
    assert decoder.best_path(np.zeros((0, BLANK + 1), np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="classes per frame"):
        decoder.best_path(np.zeros((5, BLANK), np.float32))


def test_too_few_frames_for_any_word_give_silence(decoder):
    assert text_of(decoder, frames_spelling({"-": LIKELY})) == ""


def spoken_with_pauses(*phrases: str, pause: int = 30, gap: int = 2) -> np.ndarray:
    """Phrases spelt one confident frame per character, words `gap` blank frames apart, phrases `pause`
    blank frames apart: a letter every other frame or so, silence only between phrases."""
    frames = []
    for i, phrase in enumerate(phrases):
        if i:
            frames += [{"-": LIKELY}] * pause
        for j, word in enumerate(phrase.split()):
            frames += ([{" ": LIKELY}] + [{"-": LIKELY}] * (gap - 1) if j else []) + spell(word)[:-1]
    return frames_spelling(*frames)


def test_a_long_input_is_cut_at_its_pauses_into_pieces_no_longer_than_the_limit():
    frames = spoken_with_pauses("good morning", "the house", "water and bread", "thank you")
    silent = frames.argmax(1) == BLANK
    cuts = pause_cuts(frames, BLANK, ENGLISH_LABELS.index(" "), 40)
    edges = [0, *cuts, len(frames)]
    assert cuts and all(0 < b - a <= 40 for a, b in zip(edges, edges[1:], strict=False))
    assert all(silent[cut - 8 : cut + 9].all() for cut in cuts)  # inside a pause, not a word
    assert pause_cuts(frames, BLANK, ENGLISH_LABELS.index(" "), len(frames)) == []


def test_cuts_settled_on_the_first_frames_are_the_first_cuts_of_the_whole():
    """A stream's frames arrive a window at a time; the cuts it may act on early are the whole input's."""
    space = ENGLISH_LABELS.index(" ")
    frames = log_softmax(np.random.default_rng(3).normal(0, 3, (700, len(ENGLISH_LABELS) + 1)).astype(np.float32))
    whole = pause_cuts(frames, BLANK, space, 60)
    assert len(whole) >= 10
    settled_counts = []
    for known in range(0, len(frames) + 1, 7):
        settled = settled_pause_cuts(frames[:known], BLANK, space, 60)
        assert settled == whole[: len(settled)], known
        settled_counts.append(len(settled))
    assert settled_counts[-1] >= len(whole) - 1 and sorted(settled_counts) == settled_counts


def test_a_stream_cuts_at_the_first_sure_pause_and_never_takes_a_cut_back():
    """early_pause_cuts: each cut as soon as a pause of PAUSE_FRAMES either side is sure, once a
    quarter of the longest piece is behind it; cuts made on the first frames stay cuts of the whole."""
    space = ENGLISH_LABELS.index(" ")
    frames = spoken_with_pauses("good morning", "the house", "water and bread", "thank you", "see you")
    sure = np.log(0.98)
    whole = early_pause_cuts(frames, BLANK, space, 60, sure)
    silent = frames.argmax(1) == BLANK
    pause_starts = [t for t in range(1, len(frames)) if silent[t : t + 30].all() and not silent[t - 1]]
    assert whole == [start + 8 for start in pause_starts]  # the first frame with 8 silent ones before it
    for known in range(len(frames) + 1):
        cuts = early_pause_cuts(frames[:known], BLANK, space, 60, sure)
        assert cuts == whole[: len(cuts)], known
        assert len(cuts) == sum(start + 17 <= known for start in pause_starts)  # once 8 more frames are in
    for known in range(len(frames) + 1):  # no pause that sure: cut as files are, once settled
        unsure = early_pause_cuts(frames[:known], BLANK, space, 40, np.log(0.999))
        assert unsure == settled_pause_cuts(frames[:known], BLANK, space, 40), known
    assert unsure


def test_a_search_in_pieces_gives_the_words_of_one_search():
    """Each piece ends its last word; where pieces meet the words stay apart."""
    frames = spoken_with_pauses("good morning", "the house", "water and bread", "thank you")
    whole = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(words=20_000))
    pieces = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(words=20_000, max_frames=40))
    assert len(pause_cuts(frames, BLANK, ENGLISH_LABELS.index(" "), 40)) >= 3
    assert text_of(pieces, frames) == text_of(whole, frames) == "good morning the house water and bread thank you"


def test_paths_of_pieces_join_with_a_space_where_a_blank_meets_the_next_word():
    space = ENGLISH_LABELS.index(" ")
    t, o = ENGLISH_LABELS.index("t"), ENGLISH_LABELS.index("o")
    joined = joined_paths([np.array([t, o, BLANK]), np.array([BLANK, t, o])], BLANK, space)
    assert joined.tolist() == [t, o, BLANK, space, t, o]
    assert greedy_text(joined, len(joined), ENGLISH_LABELS) == "to to"
    ends_in_letter = joined_paths([np.array([t, o]), np.array([BLANK, o])], BLANK, space)
    assert greedy_text(ends_in_letter, 4, ENGLISH_LABELS) == "to o"
    apart = joined_paths([np.array([t, o, space]), np.array([BLANK, o])], BLANK, space)
    assert apart.tolist() == [t, o, space, BLANK, o]  # a space already there: nothing to change


@pytest.fixture(scope="module")
def context_arpa(tmp_path_factory):
    """A bigram over five words where 'cat' follows 'the' and 'cot' follows 'a', built by the
    project's own ARPA writer; both nouns are equally likely alone."""
    from training.ngram_lm import count_ngrams, write_arpa

    words = ["the", "a", "cat", "cot", "sat"]
    unigram_log_p = {w: float(np.log(1 / 6)) for w in [*words, "</s>"]}
    counts, _, _ = count_ngrams([["the", "cat"]] * 20 + [["a", "cot"]] * 20, {"<s>", "</s>", *words}, order=2)
    path = tmp_path_factory.mktemp("lm") / "context.arpa.gz"
    write_arpa(path, unigram_log_p, counts)
    return path


def test_an_arpa_bigram_picks_the_word_its_previous_word_predicts(context_arpa):
    decoder = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(lm_weight=1.0, language_model=str(context_arpa)))
    assert sorted(decoder.words) == sorted(["the", "a", "cat", "cot", "sat", "<unk>"])
    vowel_prefers = {"cat": {"a": LIKELY, "o": LIKELY - 0.5}, "cot": {"o": LIKELY, "a": LIKELY - 0.5}}
    for first, acoustic, expected in (("the", "cot", "the cat"), ("a", "cat", "a cot")):
        frames = frames_spelling(*spell(first + " "), {"c": LIKELY}, vowel_prefers[acoustic], {"t": LIKELY})
        assert text_of(decoder, frames) == expected
    acoustic_only = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(lm_weight=0.0, language_model=str(context_arpa)))
    frames = frames_spelling(*spell("the "), {"c": LIKELY}, vowel_prefers["cot"], {"t": LIKELY})
    assert text_of(acoustic_only, frames) == "the cot"


def the_cat_or_cot() -> np.ndarray:
    """'the c?t' where the vowel sounds a little more like 'a': the bigram and the sound both say 'cat'."""
    return frames_spelling(*spell("the "), {"c": LIKELY}, {"a": LIKELY, "o": LIKELY - 0.5}, {"t": LIKELY})


def test_a_hotword_wins_where_the_language_model_and_the_sound_prefer_another_word(context_arpa):
    decoder = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(lm_weight=1.0, language_model=str(context_arpa)))
    frames = the_cat_or_cot()
    assert text_of(decoder, frames) == "the cat"
    assert text_of(decoder, frames, ["COT"]) == "the cot"
    assert text_of(decoder, frames, ["sat"]) == "the cat"
    unboosted = dataclasses.replace(decoder.settings, hotword_boost=0.0)
    plain = LexiconDecoder(ENGLISH_LABELS, unboosted)
    assert text_of(plain, frames, ["cot"]) == "the cat"


def test_the_settings_hotwords_favour_every_search_and_must_be_in_the_lexicon(context_arpa):
    settings = LexiconSettings(lm_weight=1.0, language_model=str(context_arpa), hotwords=("cot",))
    decoder = LexiconDecoder(ENGLISH_LABELS, settings)
    assert text_of(decoder, the_cat_or_cot()) == "the cot"
    with pytest.raises(UnknownWords, match="not in the lexicon: dog"):
        LexiconDecoder(ENGLISH_LABELS, dataclasses.replace(settings, hotwords=("cot", "dog")))


def test_a_hotword_wins_with_the_unigram_language_model_too(decoder):
    frames = frames_spelling({"r": LIKELY}, {"e": LIKELY, "a": LIKELY - 0.5}, {"d": LIKELY}, {"-": LIKELY})
    assert text_of(decoder, frames) == "red"
    assert text_of(decoder, frames, ["rad"]) == "rad"


def test_a_phrase_favours_its_word_only_after_the_words_before_it(context_arpa):
    decoder = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(lm_weight=1.0, language_model=str(context_arpa)))
    frames = the_cat_or_cot()
    assert text_of(decoder, frames, ["a cot"]) == "the cat"
    assert text_of(decoder, frames, ["The  Cot"]) == "the cot"


def test_a_phrase_left_unfinished_gives_its_boost_back(decoder):
    """'r?d dog' where the vowel sounds a little more like 'e': the words 'rad' and 'cat' as hotwords
    make it 'rad', the phrase 'rad cat' does not, as 'cat' never follows; nor at the input's end."""
    red = [{"r": LIKELY}, {"e": LIKELY, "a": LIKELY - 0.5}, {"d": LIKELY}, {"-": LIKELY}]
    red_dog = frames_spelling(*red, *spell(" dog"))
    assert text_of(decoder, red_dog) == "red dog"
    assert text_of(decoder, red_dog, ["rad", "cat"]) == "rad dog"
    assert text_of(decoder, red_dog, ["rad cat"]) == "red dog"
    red_cat = frames_spelling(*red, *spell(" cat"))
    assert text_of(decoder, red_cat, ["rad cat"]) == "rad cat"
    red_alone = frames_spelling(*red)
    assert text_of(decoder, red_alone, ["rad cat"]) == "red"


def test_a_hotword_outside_the_lexicon_is_refused_by_name(decoder):
    with pytest.raises(UnknownWords, match="not in the lexicon: qasrx, zzqy") as refused:
        decoder.best_path(frames_spelling(*spell("red")), ["red", "qasrx", "red zzqy qasrx"])
    assert refused.value.words == ["qasrx", "zzqy"]


def test_a_vocabulary_file_adds_words_the_language_model_lacks(context_arpa, tmp_path):
    vocabulary = tmp_path / "words.txt"
    vocabulary.write_text("# product names\nQasr\n\ncat\n")
    frames = frames_spelling(*spell("the qasr"))
    without = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(language_model=str(context_arpa)))
    assert "qasr" not in text_of(without, frames)
    decoder = LexiconDecoder(
        ENGLISH_LABELS, LexiconSettings(language_model=str(context_arpa), vocabulary=str(vocabulary))
    )
    assert decoder.words.count("cat") == 1 and decoder.words[decoder.known] == "qasr"
    assert text_of(decoder, frames) == "the qasr"
    lm, kenlm = decoder._language_model(decoder.phrases([])), decoder.kenlm
    after_the = lm.score(lm.start(False), decoder.words.index("the"))[0]
    kenlm_after_the = kenlm.score(kenlm.start(False), decoder.words.index("the"))[0]
    as_the_rarest = kenlm.score(kenlm_after_the, decoder.rarest)[1]  # a word context_arpa saw, in that place
    assert lm.score(after_the, decoder.words.index("qasr"))[1] == as_the_rarest


def test_a_vocabulary_word_the_model_cannot_spell_is_refused_with_its_line(tmp_path):
    vocabulary = tmp_path / "words.txt"
    vocabulary.write_text("fine\nnaïve\n")
    with pytest.raises(ValueError, match="words.txt, line 2: 'naïve' has characters the model cannot spell: 'ï'"):
        vocabulary_words(vocabulary, ENGLISH_LABELS)


def test_paths_ending_in_the_same_word_share_a_bigram_state(context_arpa):
    from quantizer.lexicon import _RecentWords

    decoder = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(language_model=str(context_arpa)))
    lm = _RecentWords(decoder.kenlm, 2, decoder.known, decoder.rarest, PhraseBoosts([], 1.0))
    start = lm.start(False)
    the, a, cat = (decoder.words.index(w) for w in ("the", "a", "cat"))
    after_the_cat, score_after_the = lm.score(lm.score(start, the)[0], cat)
    after_a_cat, score_after_a = lm.score(lm.score(start, a)[0], cat)
    assert after_the_cat is after_a_cat
    assert score_after_the > score_after_a  # the scores still see the previous word


def test_a_file_that_is_not_arpa_is_refused(tmp_path):
    from quantizer.lexicon import arpa_order

    bad = tmp_path / "words.txt"
    bad.write_text("the\ncat\n")
    with pytest.raises(ValueError, match="not an ARPA file"):
        arpa_order(bad)


def test_a_repeated_score_is_kenlms_answer_and_a_new_search_forgets_the_last(context_arpa):
    from quantizer.lexicon import _RecentWords

    decoder = LexiconDecoder(ENGLISH_LABELS, LexiconSettings(language_model=str(context_arpa)))
    lm = _RecentWords(decoder.kenlm, 2, decoder.known, decoder.rarest, PhraseBoosts([], 1.0))
    start = lm.start(False)
    the, cat = (decoder.words.index(w) for w in ("the", "cat"))
    after_the, score = lm.score(start, the)
    again_state, again_score = lm.score(start, the)
    assert again_state is after_the and again_score == score
    kenlm_after_the, kenlm_score = decoder.kenlm.score(decoder.kenlm.start(False), the)
    assert score == kenlm_score
    assert lm.score(after_the, cat)[1] == decoder.kenlm.score(kenlm_after_the, cat)[1]
    restarted = lm.start(False)
    assert lm.scored == {} and lm.score(restarted, the)[1] == score
