"""The synthetic corpus generator on a handful of sentences, with the real TTS programs."""

import json
import random

import numpy as np
import pytest
import soundfile

from quantizer.manifest import SAMPLE_RATE, read_manifest
from quantizer.nemo_configs import ENGLISH_LABELS
from training import corpus


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return corpus.kjv_sentences()


def test_sentences_are_many_normalised_and_split_for_holding_out(sentences):
    assert len(sentences) > 40_000
    assert all(set(s) <= set(ENGLISH_LABELS) and 4 <= len(s.split()) <= 24 for s in sentences)
    heldout = sum(map(corpus.is_heldout_sentence, sentences)) / len(sentences)
    assert 0.03 < heldout < 0.07


@pytest.mark.parametrize("engine", ["piper", "espeak", "flite", "festival"])
def test_a_shard_is_16khz_speech_with_its_transcripts(tmp_path, monkeypatch, sentences, engine):
    monkeypatch.setattr(corpus, "SHARD_SIZE", 3)
    monkeypatch.setattr(corpus, "PIPER_SHARE", 1.0 if engine == "piper" else 0.0)
    pool = [s for s in sentences if corpus.is_heldout_sentence(s)]
    mix = engine if engine in corpus.TTS_VOICES else "mixed"
    corpus.make_shard(7, tmp_path, pool, heldout=True, seed=1, variants=corpus.espeak_variants(), engine=mix)

    entries = [json.loads(line) for line in (tmp_path / "shards" / "00007.jsonl").read_text().splitlines()]
    assert len(entries) == 3 and {e["engine"] for e in entries} == {engine}
    for entry in entries:
        assert entry["text"] in pool
        samples, rate = soundfile.read(str(tmp_path / entry["audio_filepath"]))
        assert rate == SAMPLE_RATE and samples.ndim == 1
        assert abs(len(samples) / rate - entry["duration"]) < 1e-2
        # Speech-length audio with energy, not silence: about 0.15-1 s per word.
        assert 0.15 < entry["duration"] / len(entry["text"].split()) < 1.0
        assert np.sqrt(np.mean(samples**2)) > 1e-3


def test_heldout_voices_are_never_used_for_training():
    rng = random.Random(0)
    variants = ["m1", "m3", "f2", "klatt", "Andy"]
    for _ in range(200):
        voice = corpus.shard_voice(rng, heldout=False, variants=variants)
        if voice.engine == "espeak":
            assert not set(voice.settings["variants"]) & corpus.ESPEAK_HELDOUT_VARIANTS
        else:
            assert 0.85 <= voice.settings["length_scale"] <= 1.25
    for engine, (train_voices, heldout_voices) in corpus.TTS_VOICES.items():
        assert not set(train_voices) & set(heldout_voices)
        for heldout in (False, True):
            voices = corpus.shard_voice(rng, heldout, variants, engine=engine).settings["voices"]
            assert voices == (heldout_voices if heldout else train_voices)


@pytest.mark.parametrize("voice", corpus.TTS_VOICES["festival"][0])
def test_festival_voices_follow_the_duration_stretch(tmp_path, monkeypatch, voice):
    fastest, slowest = corpus.DURATION_STRETCH
    seconds = {}
    for stretch in (fastest, slowest):
        monkeypatch.setattr(corpus, "DURATION_STRETCH", (stretch, stretch))
        path = corpus.synthesize_festival(
            "and the lord spake unto moses", {"voices": [voice]}, random.Random(0), tmp_path / "a.wav"
        )
        seconds[stretch] = soundfile.info(str(path)).duration
    assert seconds[slowest] / seconds[fastest] == pytest.approx(slowest / fastest, rel=0.15)


def test_generation_resumes_and_writes_disjoint_manifests(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "SHARD_SIZE", 2)
    monkeypatch.setattr(corpus, "PIPER_SHARE", 0.0)  # espeak-ng: fast
    corpus.generate(tmp_path, hours=0.001, heldout_minutes=0.05, seed=0)
    first = (tmp_path / "train.jsonl").read_text()
    shards = sorted(p.name for p in (tmp_path / "shards").iterdir())

    hours = corpus.generate(tmp_path, hours=0.001, heldout_minutes=0.05, seed=0)  # nothing left to do
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == shards
    assert (tmp_path / "train.jsonl").read_text() == first and hours["train"] >= 0.001

    train = {u.text for u in read_manifest(tmp_path / "train.jsonl", ENGLISH_LABELS)}
    heldout = {u.text for u in read_manifest(tmp_path / "heldout.jsonl", ENGLISH_LABELS)}
    assert train and heldout and not train & heldout


def test_an_unknown_engine_is_refused(tmp_path):
    with pytest.raises(ValueError, match="engine must be one of"):
        corpus.generate(tmp_path, hours=0.001, heldout_minutes=0.05, seed=0, engine="mbrola")


def test_a_missing_tts_program_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus.shutil, "which", lambda program: None if program == "text2wave" else "/usr/bin/x")
    with pytest.raises(corpus.ToolMissing, match="`text2wave` not found: `make system-packages` installs it"):
        corpus.generate(tmp_path, hours=0.001, heldout_minutes=0.05, seed=0, engine="festival")


def dominant_hz(path, low_hz: float, high_hz: float) -> float:
    samples, rate = soundfile.read(str(path))
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    frequencies = np.fft.rfftfreq(len(samples), 1 / rate)
    band = (frequencies > low_hz) & (frequencies < high_hz)
    return float(frequencies[band][np.argmax(spectrum[band])])


def write_tone(path, hz: float = 1000.0, seconds: float = 2.0):
    times = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    soundfile.write(str(path), 0.5 * np.sin(2 * np.pi * hz * times), SAMPLE_RATE)
    return path


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_pitch_shift_moves_frequencies_by_the_drawn_cents_times_the_speed(tmp_path, seed):
    tone = write_tone(tmp_path / "tone.wav")
    draws = random.Random(seed)
    cents, speed = draws.uniform(-300, 300), draws.uniform(0.9, 1.1)  # augment's first two draws

    corpus.augment(tone, tmp_path / "shifted.wav", random.Random(seed), pitch_cents=300)

    expected_hz = 1000.0 * 2 ** (round(cents) / 1200) * speed
    assert dominant_hz(tmp_path / "shifted.wav", 600, 1800) == pytest.approx(expected_hz, rel=0.01)


def test_without_a_pitch_shift_only_the_speed_moves_frequencies(tmp_path):
    tone = write_tone(tmp_path / "tone.wav")
    speed = random.Random(4).uniform(0.9, 1.1)  # augment's first draw when nothing is shifted

    corpus.augment(tone, tmp_path / "out.wav", random.Random(4))

    assert dominant_hz(tmp_path / "out.wav", 600, 1800) == pytest.approx(1000.0 * speed, rel=0.01)


@pytest.mark.parametrize("cents", [-100, corpus.MAX_PITCH_CENTS + 1])
def test_a_pitch_shift_out_of_range_is_refused(tmp_path, cents):
    with pytest.raises(ValueError, match="pitch_cents must be within"):
        corpus.generate(tmp_path, hours=0.001, heldout_minutes=0.05, seed=0, pitch_cents=cents)
