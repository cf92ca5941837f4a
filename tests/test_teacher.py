import shutil

import numpy as np
import pytest

from quantizer.manifest import SAMPLE_RATE
from tests.toy_speech import espeak_speech
from training.teacher import FRAME_SAMPLES, encode_utterance


class FrameMeanEncoder:
    """Stand-in encoder: frame i = mean of samples [320 i, 320 (i + 1)) in every dimension."""

    def encode(self, samples: np.ndarray) -> np.ndarray:
        window = np.zeros(30 * SAMPLE_RATE, np.float32)
        window[: len(samples)] = samples
        return np.repeat(window.reshape(1500, FRAME_SAMPLES).mean(axis=1, keepdims=True), 384, axis=1)


def test_an_utterance_gets_one_frame_per_20_ms_of_its_own_audio(tmp_path):
    audio = np.random.default_rng(0).uniform(-1, 1, 16000 + 123).astype(np.float32)  # not whole frames
    frames = encode_utterance(FrameMeanEncoder(), audio)
    padded = np.zeros(51 * FRAME_SAMPLES, np.float32)
    padded[: len(audio)] = audio
    assert frames.shape == (51, 384) and frames.dtype == np.float16
    np.testing.assert_allclose(frames[:, 0], padded.reshape(51, FRAME_SAMPLES).mean(axis=1), atol=1e-3)


def _median_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    return float(np.median((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is a system package (make system-packages)")
def test_whisper_frames_follow_the_speech_at_20_ms_per_frame():
    pytest.importorskip("faster_whisper")
    from training.teacher import WhisperEncoder

    speech = espeak_speech("the quick brown fox jumps over the lazy dog")
    delayed = np.concatenate([np.zeros(25 * FRAME_SAMPLES, np.float32), speech])  # 0.5 s later
    encoder = WhisperEncoder()
    original = encode_utterance(encoder, speech).astype(np.float32)
    shifted = encode_utterance(encoder, delayed).astype(np.float32)
    assert shifted.shape == (len(original) + 25, 384) and np.isfinite(shifted).all()
    aligned = _median_cosine(shifted[25:], original)
    assert aligned > 0.6 and aligned > _median_cosine(shifted[: len(original)], original) + 0.2
