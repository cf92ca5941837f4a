"""NeMo manifests, audio and transcripts for training: read, normalise, batch by duration."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

SAMPLE_RATE = 16000  # Hz; the recipe's manifests are 16 kHz (the shared data is)


@dataclass(frozen=True)
class Utterance:
    audio: Path
    seconds: float
    text: str


def normalize_text(text: str, labels: list[str]) -> str:
    """Lower-case, hyphens to spaces, drop characters outside the vocabulary, collapse spaces."""
    allowed = set(labels)
    text = text.lower().replace("-", " ")
    text = "".join(c for c in text if c in allowed)
    return re.sub(r" +", " ", text).strip()


def read_manifest(path: str | Path, labels: list[str], max_seconds: float) -> list[Utterance]:
    """NeMo manifest lines (audio_filepath relative to the manifest, duration, text), normalised;
    utterances longer than max_seconds or with no text left are skipped."""
    path = Path(path)
    utterances = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        text = normalize_text(entry["text"], labels)
        if text and float(entry["duration"]) <= max_seconds:
            utterances.append(Utterance(path.parent / entry["audio_filepath"], float(entry["duration"]), text))
    return utterances


def load_audio(path: Path) -> np.ndarray:
    """float32 mono samples at SAMPLE_RATE."""
    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {rate} Hz; the training recipe takes {SAMPLE_RATE} Hz audio")
    return samples.mean(axis=1)


def duration_batches(utterances: list[Utterance], batch_seconds: float, rng: random.Random) -> list[list[Utterance]]:
    """Shuffled batches of similar lengths, each at most batch_seconds of padded audio."""
    ordered = sorted(utterances, key=lambda u: u.seconds + rng.random() * 0.5)
    batches, current = [], []
    for utterance in ordered:
        if current and utterance.seconds * (len(current) + 1) > batch_seconds:
            batches.append(current)
            current = []
        current.append(utterance)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches
