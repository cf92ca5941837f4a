import json
import shutil

import numpy as np
import pytest
import soundfile

from quantizer.manifest import SAMPLE_RATE
from tests.toy_speech import espeak_speech
from training.teacher import FRAME_SAMPLES, STATS, encode_utterance, frames_key, write_stats, write_teacher_frames


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


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is a system package (make system-packages)")
def test_teacher_frames_are_written_once_per_utterance_with_their_statistics(tmp_path):
    pytest.importorskip("faster_whisper")
    lines = []
    for name, text in (("a", "good morning"), ("b", "see you tomorrow")):
        soundfile.write(tmp_path / f"{name}.wav", espeak_speech(text), SAMPLE_RATE)
        lines.append(json.dumps({"audio_filepath": f"{name}.wav", "duration": 1.0, "text": text}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines))
    out = tmp_path / "teacher"
    assert write_teacher_frames([str(tmp_path / "manifest.jsonl")], out) == 2
    frames = np.load(out / f"{frames_key(tmp_path / 'a.wav')}.npy")
    assert frames.shape == (-(-len(soundfile.read(tmp_path / "a.wav")[0]) // FRAME_SAMPLES), 384)
    assert np.load(out / STATS)["std"].shape == (384,)
    assert write_teacher_frames([str(tmp_path / "manifest.jsonl")], out) == 0  # resumed: nothing left to do


def test_statistics_of_an_empty_teacher_folder_are_refused_with_the_folder_named(tmp_path):
    with pytest.raises(ValueError, match="no teacher frames"):
        write_stats(tmp_path)
