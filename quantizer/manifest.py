"""NeMo manifests (JSON lines: audio_filepath, duration, text, optionally offset) and their audio, for evaluation
and training."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

SAMPLE_RATE = 16000  # Hz; manifests here are 16 kHz (resampling belongs to the service's audio input)


@dataclass(frozen=True)
class Utterance:
    audio: Path
    seconds: float
    text: str
    offset: float | None = None  # seconds into the file where it starts; None: the utterance is the whole file
    group: str = ""  # the manifest field read_manifest was asked to group by, as text


def normalize_text(text: str, labels: list[str]) -> str:
    """Lower-case, hyphens to spaces, drop characters outside the vocabulary, collapse spaces."""
    allowed = set(labels)
    text = text.lower().replace("-", " ")
    text = "".join(c for c in text if c in allowed)
    return re.sub(r" +", " ", text).strip()


def read_manifest(
    path: str | Path, labels: list[str], max_seconds: float = float("inf"), group_by: str | None = None
) -> list[Utterance]:
    """Normalised utterances (audio paths relative to the manifest); longer than max_seconds or
    with no text left: skipped. With group_by, each line must have that field (speaker, say)."""
    path = Path(path)
    utterances = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            audio, seconds, text = entry["audio_filepath"], float(entry["duration"]), entry["text"]
            offset = None if entry.get("offset") is None else float(entry["offset"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}:{number}: not a NeMo manifest line ({error})") from error
        if group_by is not None and group_by not in entry:
            raise ValueError(f"{path}:{number}: no field '{group_by}' to group by")
        group = "" if group_by is None else str(entry[group_by])
        text = normalize_text(text, labels)
        if text and seconds <= max_seconds:
            utterances.append(Utterance(path.parent / audio, seconds, text, offset, group))
    return utterances


def load_audio(path: Path, offset: float = 0.0, seconds: float | None = None) -> np.ndarray:
    """float32 mono samples at SAMPLE_RATE: the whole file, or `seconds` of it from `offset`."""
    start, frames = round(offset * SAMPLE_RATE), -1 if seconds is None else round(seconds * SAMPLE_RATE)
    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True, start=start, frames=frames)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {rate} Hz; manifests must hold {SAMPLE_RATE} Hz audio")
    return samples.mean(axis=1)


def load_utterance(utterance: Utterance) -> np.ndarray:
    """An utterance's samples: its whole file, or its `duration` from its `offset` when the manifest gave one."""
    if utterance.offset is None:
        return load_audio(utterance.audio)
    return load_audio(utterance.audio, utterance.offset, utterance.seconds)
