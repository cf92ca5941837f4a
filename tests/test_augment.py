import random

import numpy as np
import pytest
import torch

from quantizer.manifest import SAMPLE_RATE
from training.augment import change_speed, draw_factors, speed_factors, stretch_frames


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
