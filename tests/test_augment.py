import random

import numpy as np
import pytest
import torch

from quantizer.manifest import SAMPLE_RATE
from training.augment import (
    RT60_S,
    SNR_DB,
    change_speed,
    degrade,
    draw_degradations,
    draw_factors,
    room_impulse,
    speed_factors,
    stretch_frames,
)


def _peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)[spectrum.argmax()])


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_change_scales_duration_and_pitch_together(factor):
    seconds = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * 1000 * seconds).astype(np.float32)
    changed = change_speed(tone, factor)
    assert changed.dtype == np.float32
    assert abs(len(changed) - len(tone) / factor) <= 1
    assert _peak_hz(changed) == pytest.approx(1000 * factor, abs=2)


def test_unchanged_speed_returns_the_audio_itself():
    audio = np.ones(100, np.float32)
    assert change_speed(audio, 1.0) is audio


def test_teacher_frames_stretch_to_the_new_duration_and_keep_their_ends():
    frames = torch.arange(100, dtype=torch.float32).repeat(3, 1)  # [D=3, T=100]
    for factor in (0.9, 1.1):
        stretched = stretch_frames(frames, factor)
        assert stretched.shape == (3, round(100 / factor))
        assert stretched[:, 0].tolist() == [0, 0, 0] and stretched[:, -1].tolist() == [99, 99, 99]
        assert bool((stretched.diff(dim=1) > 0).all())


def test_factors_are_drawn_from_the_three_speeds_and_off_means_unchanged():
    rng = random.Random(0)
    assert set(draw_factors(300, 0.1, rng)) == set(speed_factors(0.1)) == {0.9, 1.0, 1.1}
    assert draw_factors(5, 0.0, rng) == [1.0] * 5


def _speech_like(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.mark.parametrize("snr_db", [5.0, 20.0])
def test_noise_is_added_at_the_asked_signal_to_noise_ratio(snr_db):
    clean = _speech_like()
    noisy = degrade(clean, snr_db, 0.0, np.random.default_rng(0))
    rms = np.sqrt(np.mean(clean.astype(np.float64) ** 2))
    assert noisy.dtype == np.float32 and len(noisy) == len(clean)
    assert np.sqrt(np.mean(noisy.astype(np.float64) ** 2)) == pytest.approx(rms, rel=1e-4)  # level kept
    # undo the level matching, then measure what was added
    scale = np.sqrt(1 + 10 ** (-snr_db / 10))
    noise = noisy * scale - clean
    measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.5)


def test_a_room_keeps_the_timing_and_adds_a_decaying_tail():
    impulse = room_impulse(0.5, np.random.default_rng(0))
    assert len(impulse) == SAMPLE_RATE // 2 and impulse[0] == 1.0
    tail = np.abs(impulse[1:])
    tenth = len(tail) // 10
    assert tail[:tenth].mean() > 100 * tail[-tenth:].mean()  # about 60 dB down by the end
    click = np.zeros(SAMPLE_RATE, np.float32)
    click[1000] = 1.0
    wet = degrade(click, float("inf"), 0.5, np.random.default_rng(1))
    assert int(np.argmax(np.abs(wet))) == 1000  # the direct sound stays where it was
    assert np.abs(wet[:1000]).max() < 1e-6 < np.abs(wet[1001:]).max()  # nothing before it (FFT rounding aside)


def test_nothing_to_do_returns_the_audio_itself():
    audio = _speech_like(0.1)
    assert degrade(audio, float("inf"), 0.0, np.random.default_rng(0)) is audio


def test_degradations_are_drawn_in_range_and_off_draws_nothing():
    rng = random.Random(0)
    draws = draw_degradations(2000, 0.5, rng)
    degraded = [(snr, rt60) for snr, rt60 in draws if rt60 > 0 or np.isfinite(snr)]
    assert 0.45 < len(degraded) / len(draws) < 0.55
    assert all(SNR_DB[0] <= snr <= SNR_DB[1] for snr, _ in degraded if np.isfinite(snr))
    assert all(RT60_S[0] <= rt60 <= RT60_S[1] for _, rt60 in degraded if rt60 > 0)
    assert any(rt60 == 0 for _, rt60 in degraded) and any(not np.isfinite(snr) for snr, _ in degraded)
    state = rng.getstate()
    assert draw_degradations(5, 0.0, rng) == [(float("inf"), 0.0)] * 5
    assert rng.getstate() == state  # a run without degradation keeps its batch order
