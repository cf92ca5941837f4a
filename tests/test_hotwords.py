"""A request's hotwords: parsed, checked against the lexicon, and picked from an OpenAI prompt."""

from __future__ import annotations

import pytest

from app.hotwords import HOTWORD_LIMIT, HotwordLexicon, capitalised_runs
from app.settings import Settings
from quantizer.lexicon import SHIPPED_LANGUAGE_MODEL, LexiconSettings, UnknownWords
from quantizer.nemo_configs import ENGLISH_LABELS


@pytest.fixture(scope="module")
def lexicon(tmp_path_factory) -> HotwordLexicon:
    vocabulary = tmp_path_factory.mktemp("vocabulary") / "words.txt"
    vocabulary.write_text("qasr\nkubeflow\n")
    settings = LexiconSettings(language_model=str(SHIPPED_LANGUAGE_MODEL), vocabulary=str(vocabulary))
    return HotwordLexicon(ENGLISH_LABELS, settings)


def test_hotword_fields_split_on_commas_and_spaces_lower_cased_each_once(lexicon):
    assert lexicon.checked(["Qasr, nemo\tlinux", "NEMO,, zebra\n"]) == ("qasr", "nemo", "linux", "zebra")
    assert lexicon.checked([" , "]) == ()


def test_words_in_double_quotes_make_one_phrase(lexicon):
    fields = ['Qasr, "New  York,Times" linux', '"new york times" "" qasr', "\u201cJane Austen\u201d"]
    assert lexicon.checked(fields) == ("qasr", "new york times", "linux", "jane austen")
    with pytest.raises(ValueError, match="hotwords: a double quote without its pair in 'linux \"new york'"):
        lexicon.checked(['linux "new york'])
    with pytest.raises(UnknownWords, match="not in the lexicon: zzqxv$"):
        lexicon.checked(['"new zzqxv york" zzqxv'])
    with pytest.raises(ValueError, match=f"hotwords: {HOTWORD_LIMIT + 1} words, at most {HOTWORD_LIMIT}"):
        lexicon.checked(["linux", f'"{" ".join(["york"] * HOTWORD_LIMIT)}"'])


def test_words_outside_the_lexicon_are_named_and_too_many_refused(lexicon):
    with pytest.raises(UnknownWords, match="not in the lexicon: zzqxv, qqq") as refused:
        lexicon.checked(["linux zzqxv qqq zzqxv"])
    assert refused.value.words == ["zzqxv", "qqq"]
    junk = [f"x{'q' * 50}{n}" for n in range(25)]
    with pytest.raises(UnknownWords) as refused:
        lexicon.checked([" ".join(junk)])
    assert str(refused.value).endswith(f"{'q' * 39} and 15 more") and len(str(refused.value)) < 500
    words = sorted(lexicon.words)[: HOTWORD_LIMIT + 1]
    assert len(lexicon.checked([" ".join(words[:HOTWORD_LIMIT])])) == HOTWORD_LIMIT
    with pytest.raises(ValueError, match=f"at most {HOTWORD_LIMIT}"):
        lexicon.checked([" ".join(words)])


def test_a_prompt_gives_its_rarer_lexicon_words_only(lexicon):
    assert {"the", "and", "meeting"} <= lexicon.common
    prompt = "The meeting covered Kubeflow, NeMo and 'linux' kernels on Zzqxv-9 boxes."
    assert lexicon.from_prompt(prompt) == ("kubeflow", "nemo", "linux", "kernels")
    assert lexicon.from_prompt("") == () and lexicon.from_prompt("and the of") == ()


def test_a_prompt_gives_its_names_of_several_capitalised_words_as_phrases(lexicon):
    prompt = "Yesterday Jane Austen left New York; Zzqxv Smith and Tom stayed in the Old Town Hall."
    assert lexicon.from_prompt(prompt) == (
        "austen",
        "yesterday jane austen",
        "jane austen",
        "new york",
        "old town hall",
    )
    rare = sorted(w for w in lexicon.words - lexicon.common if "'" not in w)[:HOTWORD_LIMIT]
    long_prompt = " ".join(rare[:-1]) + ". " + rare[-1].title() + " " + rare[-2].title()
    assert lexicon.from_prompt(long_prompt) == tuple(rare)  # the phrase would be the 1,001st and 1,002nd words
    assert capitalised_runs("Big Ben, the Big  Ben. 'Tis O'Brien") == ["big ben", "big ben", "tis o'brien"]
    assert capitalised_runs("The Old Man") == ["the old man", "old man"]
    assert capitalised_runs("one New word") == []


def test_the_settings_hotwords_start_every_list_and_must_be_in_the_lexicon(lexicon):
    settings = LexiconSettings(language_model=str(SHIPPED_LANGUAGE_MODEL), hotwords=("zanzibar", "dhow"))
    with_defaults = HotwordLexicon(ENGLISH_LABELS, settings)
    assert with_defaults.checked(["linux dhow"]) == ("zanzibar", "dhow", "linux")
    assert with_defaults.from_prompt("about Linux.") == ("zanzibar", "dhow", "linux")
    assert with_defaults.from_prompt("") == ("zanzibar", "dhow")
    with pytest.raises(ValueError, match="QASR_HOTWORDS: not in the lexicon: kubeflow"):
        HotwordLexicon(
            ENGLISH_LABELS, LexiconSettings(language_model=str(SHIPPED_LANGUAGE_MODEL), hotwords=("kubeflow",))
        )


def test_hotwords_in_the_settings_need_the_lexicon_decoder():
    settings = Settings(decoder="greedy", hotwords="zanzibar, dhow")
    with pytest.raises(ValueError, match="QASR_HOTWORDS needs the lexicon decoder"):
        settings.check()
    with pytest.raises(ValueError, match="QASR_HOTWORDS: a double quote without its pair in '\"new york'"):
        Settings(decoder="lexicon", hotwords='"new york').check()
    with pytest.raises(ValueError, match="QASR_VOCABULARY='/nonexistent/words.txt': no such file"):
        Settings(decoder="lexicon", vocabulary="/nonexistent/words.txt").check()
    lexicon = Settings(decoder="lexicon", hotwords='Zanzibar,  dhow "New York"').lexicon()
    assert lexicon is not None and lexicon.hotwords == ("zanzibar", "dhow", "new york")
