"""Augmentation of training audio, applied afresh to every batch.

The 2 h of real speech is seen dozens of times per run; changing its speed (tempo and pitch together,
as sox's `speed` effect and Kaldi's 3-way perturbation do) makes each pass a slightly different
speaker and speaking rate. Teacher frames are stretched along time to match. A simulated room
(reverberation) and additive noise make it a different recording; they keep the timing, so teacher
frames need no change.
"""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import torch
from scipy.signal import fftconvolve, resample_poly

from quantizer.manifest import SAMPLE_RATE


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


def room_impulse(rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """A simulated room's impulse response [samples]: the direct sound, then exponentially decaying
    noise that falls by 60 dB in rt60_s (the statistical model of late reverberation)."""
    samples = max(1, int(rt60_s * SAMPLE_RATE))
    decay = np.exp(-np.log(1000.0) * np.arange(samples) / samples)  # amplitude -60 dB at the end
    impulse = rng.standard_normal(samples) * decay * 0.1
    impulse[0] = 1.0
    return impulse


def degrade(audio: np.ndarray, snr_db: float, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """audio [samples] played in a room with reverberation time rt60_s (0: none), then white or brown
    noise added at snr_db (inf: none); same length and RMS as the input, float32."""
    if rt60_s <= 0 and not np.isfinite(snr_db):
        return audio
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) or 1.0
    out = audio.astype(np.float64)
    if rt60_s > 0:
        out = fftconvolve(out, room_impulse(rt60_s, rng))[: len(audio)]
    if np.isfinite(snr_db):
        noise = rng.standard_normal(len(audio))
        if rng.random() < 0.5:  # brown: most energy low, like rumble and hum
            noise = np.cumsum(noise)
            noise -= noise.mean()
        noise *= np.sqrt(np.mean(out**2) / max(np.mean(noise**2), 1e-12)) * 10 ** (-snr_db / 20)
        out = out + noise
    return (out * rms / (float(np.sqrt(np.mean(out**2))) or 1.0)).astype(np.float32)


SNR_DB = (5.0, 30.0)  # additive noise, uniform in this range
RT60_S = (0.15, 0.8)  # reverberation time of the simulated room, uniform in this range


def draw_degradations(count: int, probability: float, rng: random.Random) -> list[tuple[float, float]]:
    """(snr_db, rt60_s) per utterance of a batch: with `probability` a room (half the time), noise
    (otherwise, and half the time with a room too); (inf, 0) leaves an utterance as it is."""
    draws = []
    for _ in range(count):
        if probability and rng.random() < probability:
            room = rng.random() < 0.5
            noise = not room or rng.random() < 0.5
            draws.append((rng.uniform(*SNR_DB) if noise else float("inf"), rng.uniform(*RT60_S) if room else 0.0))
        else:
            draws.append((float("inf"), 0.0))
    return draws
