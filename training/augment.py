"""Speed perturbation of training audio, applied afresh to every batch.

The 2 h of real speech is seen dozens of times per run; changing its speed (tempo and pitch together,
as sox's `speed` effect and Kaldi's 3-way perturbation do) makes each pass a slightly different
speaker and speaking rate. Teacher frames are stretched along time to match.
"""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import torch
from scipy.signal import resample_poly


def speed_factors(speed_range: float) -> tuple[float, ...]:
    """The factors drawn from: slower, unchanged and faster by speed_range (0: no perturbation)."""
    return (1 - speed_range, 1.0, 1 + speed_range) if speed_range else (1.0,)


def draw_factors(count: int, speed_range: float, rng: random.Random) -> list[float]:
    """One speed factor per utterance of a batch."""
    if not speed_range:  # draws nothing, so a run without perturbation keeps its batch order
        return [1.0] * count
    return [rng.choice(speed_factors(speed_range)) for _ in range(count)]


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """audio [samples] played factor times as fast: about samples / factor samples, band-limited."""
    if factor == 1.0:
        return audio
    ratio = Fraction(factor).limit_denominator(100)
    return resample_poly(audio, up=ratio.denominator, down=ratio.numerator).astype(np.float32)


def stretch_frames(frames: torch.Tensor, factor: float) -> torch.Tensor:
    """frames [D, T] of the original audio, linearly resampled to the [D, round(T / factor)] frames
    of the audio played factor times as fast."""
    if factor == 1.0:
        return frames
    length = max(1, round(frames.shape[-1] / factor))
    return torch.nn.functional.interpolate(frames[None], size=length, mode="linear", align_corners=True)[0]
