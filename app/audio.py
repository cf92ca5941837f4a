"""Uploaded bytes -> float32 mono samples at the model's rate, or an AudioError saying why not."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr


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
    """Anything libsndfile reads (WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF, ...), and MP4/M4A, WebM/Matroska
    and ADTS AAC through FFmpeg (PyAV); channels averaged; resampled with soxr (high quality); NaN/Inf,
    empty and silent input refused with a 4xx."""
    if not data:
        raise AudioError(400, "the upload is empty")
    container = _ffmpeg_container(data[:12])
    if container is None:
        samples, rate = _read_with_libsndfile(data, max_seconds)
    else:
        samples, rate = _read_with_ffmpeg(data, *container, max_seconds)
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


def _ffmpeg_container(head: bytes) -> tuple[str, str] | None:
    """The first bytes of a file libsndfile cannot read but FFmpeg can -> (FFmpeg demuxer, name); None otherwise."""
    if head[4:8] == b"ftyp":
        return "mov", "MP4/M4A"  # FFmpeg's mov demuxer reads MP4, M4A, MOV and 3GP
    if head[:4] == b"\x1aE\xdf\xa3":
        return "matroska", "Matroska/WebM"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS sync word, MPEG layer 0
        return "aac", "AAC (ADTS)"
    return None


def _read_with_ffmpeg(data: bytes, demuxer: str, name: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """The first audio stream -> float32 samples [S, channels] and their rate. Only `demuxer` is
    tried, so FFmpeg never guesses at another format's parser."""
    import av  # here, so that a service never sent such a file does not hold FFmpeg's libraries (20 MB)

    try:
        with av.open(io.BytesIO(data), format=demuxer) as container:
            stream = next(iter(container.streams.audio), None)
            if stream is None:
                raise AudioError(415, f"the {name} file holds no audio stream")
            rate = stream.codec_context.sample_rate
            if not rate or not stream.codec_context.channels:
                raise AudioError(400, f"the {name} audio stream has no sample rate or channels")
            to_float = av.AudioResampler(format="fltp")  # each channel's samples as float32, rate and layout kept
            chunks, samples = [], 0
            for frame in container.decode(stream):
                for converted in to_float.resample(frame):
                    chunks.append(converted.to_ndarray())  # [channels, n]
                    samples += chunks[-1].shape[1]
                if samples > max_seconds * rate:
                    raise AudioError(413, f"audio is longer than the limit of {max_seconds:.0f} s")
    except av.error.InvalidDataError as error:
        raise AudioError(415, f"not a readable {name} file ({error.strerror})") from None
    except av.error.FFmpegError as error:
        raise AudioError(400, f"the {name} audio could not be decoded ({error.strerror})") from None
    if not chunks:
        return np.zeros((0, 1), np.float32), rate
    return np.concatenate(chunks, axis=1).T, rate


def _read_with_libsndfile(data: bytes, max_seconds: float) -> tuple[np.ndarray, int]:
    """float32 samples [S, channels] and their rate."""
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
    return samples, int(rate)


def _reason(error: Exception) -> str:
    """A decoder's error in one short line, without libsndfile's "Error opening <the buffer object>: "."""
    line = re.sub(r"^Error opening <[^>]*>: ", "", str(error).split("\n")[0])
    return line[:200] or type(error).__name__
