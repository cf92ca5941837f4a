"""Uploads in containers libsndfile cannot read (MP4/M4A, WebM, ADTS AAC), decoded through PyAV."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import soxr

from app.audio import AudioError, decode_audio

RATE = 16000


def two_tones(seconds: float, rate: int) -> np.ndarray:
    """float32 [2, S]: 440 Hz on the left, 660 Hz on the right, under a slow swell."""
    t = np.arange(int(seconds * rate)) / rate
    swell = 0.5 + 0.4 * np.sin(2 * np.pi * 1.5 * t)
    return np.stack([0.3 * swell * np.sin(2 * np.pi * 440 * t), 0.2 * swell * np.sin(2 * np.pi * 660 * t)]).astype(
        np.float32
    )


def encoded(samples: np.ndarray, rate: int, container: str, codec: str, video: bool = False) -> bytes:
    """Stereo float samples [2, S] as `codec` audio in a `container` file, made by FFmpeg through PyAV;
    video: a video stream instead of the audio."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        if video:
            stream = out.add_stream("mpeg4", rate=25)
            stream.width, stream.height = 64, 64
            for _ in range(10):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")))
        else:
            stream = out.add_stream(codec, rate=rate, layout="stereo")
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
            frame.sample_rate = rate
            to_codec = av.AudioResampler(format=stream.codec_context.format.name, layout="stereo", rate=rate)
            for converted in [*to_codec.resample(frame), *to_codec.resample(None)]:
                out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [("mp4", "aac", 44100), ("ipod", "aac", 48000), ("webm", "libopus", 48000), ("adts", "aac", 22050)],
)
def test_mp4_m4a_webm_and_aac_uploads_decode_to_the_sound_they_hold(container, codec, rate):
    original = two_tones(1.5, rate)
    audio = decode_audio(encoded(original, rate, container, codec), RATE, max_seconds=60)
    assert (audio.source_rate, audio.source_channels) == (rate, 2)
    expected = soxr.resample(original.mean(axis=0), rate, RATE, quality="HQ")
    # AAC pads to whole 1024-sample frames, and ADTS keeps the encoder's 1024 priming samples in front:
    extra = audio.samples.size - expected.size
    assert -RATE // 100 <= extra <= RATE // 10  # 10 ms less to 100 ms more
    n = min(audio.samples.size, expected.size)
    lags = range(-RATE // 100, RATE // 10)  # the decoded sound up to 10 ms early or 100 ms late
    similarity = max(
        np.corrcoef(audio.samples[max(lag, 0) : n + min(lag, 0)], expected[max(-lag, 0) : n - max(lag, 0)])[0, 1]
        for lag in lags
    )
    assert similarity > 0.98


def test_container_uploads_get_4xx_for_no_audio_truncation_and_length():
    with pytest.raises(AudioError) as no_audio:
        decode_audio(encoded(np.zeros((2, 1)), RATE, "mp4", "", video=True), RATE, max_seconds=60)
    assert no_audio.value.status == 415 and "holds no audio stream" in str(no_audio.value)
    m4a = encoded(two_tones(3.0, 48000), 48000, "ipod", "aac")
    with pytest.raises(AudioError) as too_long:
        decode_audio(m4a, RATE, max_seconds=2)
    assert too_long.value.status == 413 and "limit of 2 s" in str(too_long.value)
    for cut in (12, 100, len(m4a) // 2):
        with pytest.raises(AudioError) as truncated:
            decode_audio(m4a[:cut], RATE, max_seconds=60)
        assert truncated.value.status in (400, 415) and "MP4/M4A" in str(truncated.value)
    with pytest.raises(AudioError) as no_rate:  # an ADTS sync word, then nothing a header can hold
        decode_audio(bytes([0xFF, 0xF1]) + bytes(300), RATE, max_seconds=60)
    assert no_rate.value.status == 400 and "AAC (ADTS) audio stream has no sample rate" in str(no_rate.value)
    webm = encoded(two_tones(1.0, 48000), 48000, "webm", "libopus")
    with pytest.raises(AudioError) as cut_webm:
        decode_audio(webm[:40], RATE, max_seconds=60)
    assert cut_webm.value.status in (400, 415) and "Matroska/WebM" in str(cut_webm.value)
