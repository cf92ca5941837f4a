"""Uploaded bytes -> float32 mono samples at the model's rate, or an AudioError saying why not."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr

# Containers libsndfile cannot read, recognised by their magic bytes, so the client hears 415.
UNSUPPORTED_MAGIC = {b"ftyp": "MP4/M4A/AAC", b"\x1aE\xdf\xa3": "Matroska/WebM"}


class AudioError(ValueError):
    """The upload is not usable audio; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # float32 [S] mono at the target rate
    seconds: float
    source_rate: int  # Hz
    source_channels: int


def decode_audio(data: bytes, target_rate: int, max_seconds: float) -> Audio:
    """Anything libsndfile reads (WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF, ...); channels averaged;
    resampled with soxr (high quality); NaN/Inf, empty and silent input refused with a 4xx."""
    if not data:
        raise AudioError(400, "the upload is empty")
    for magic, name in UNSUPPORTED_MAGIC.items():
        if magic in data[:12]:
            raise AudioError(415, f"{name} audio is not supported: send WAV, FLAC, OGG/Opus or MP3")
    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(415, f"not a readable audio file ({_reason(error)})") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(400, f"the header claims {info.samplerate} Hz and {info.channels} channels")
    if info.frames > 0 and info.frames / info.samplerate > max_seconds:
        raise AudioError(413, f"audio is {info.frames / info.samplerate:.0f} s long; the limit is {max_seconds:.0f} s")
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, MemoryError) as error:
        raise AudioError(400, f"the audio could not be decoded ({_reason(error)})") from None
    if samples.shape[0] == 0:
        raise AudioError(400, "the audio has no samples")
    if samples.shape[0] / rate > max_seconds:
        raise AudioError(413, f"audio is {samples.shape[0] / rate:.0f} s long; the limit is {max_seconds:.0f} s")
    if not np.isfinite(samples).all():
        raise AudioError(400, "the audio contains NaN or infinite samples")
    mono = samples.mean(axis=1, dtype=np.float32)
    if not mono.any():
        raise AudioError(400, "the audio is digital silence (every sample is zero)")
    if rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate, quality="HQ").astype(np.float32)
    if mono.size < target_rate // 10:
        raise AudioError(400, f"the audio is {mono.size / target_rate * 1000:.0f} ms long; at least 100 ms is needed")
    return Audio(mono, mono.size / target_rate, int(rate), int(samples.shape[1]))


def _reason(error: Exception) -> str:
    """A decoder's error in one short line, without libsndfile's "Error opening <the buffer object>: "."""
    line = re.sub(r"^Error opening <[^>]*>: ", "", str(error).split("\n")[0])
    return line[:200] or type(error).__name__
