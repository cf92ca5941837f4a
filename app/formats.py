"""Transcript bodies: words grouped into segments; text, SRT, WebVTT, OpenAI's verbose_json and its
server-sent events."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from app.decoding import Word, transcript

SEGMENT_PAUSE_S = 0.8  # a silence this long starts a new segment
SEGMENT_MAX_S = 15.0


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    words: list[Word]

    @property
    def text(self) -> str:
        return transcript(self.words)


def word_bodies(words: list[Word]) -> list[dict]:
    """Timed words as JSON: word, start and end in s, confidence 0-1."""
    return [
        {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3), "confidence": w.confidence} for w in words
    ]


def segments(words: list[Word]) -> list[Segment]:
    groups: list[list[Word]] = []
    for word in words:
        if (
            groups
            and word.start - groups[-1][-1].end < SEGMENT_PAUSE_S
            and word.end - groups[-1][0].start < SEGMENT_MAX_S
        ):
            groups[-1].append(word)
        else:
            groups.append([word])
    return [Segment(g[0].start, g[-1].end, g) for g in groups]


def _clock(seconds: float, separator: str) -> str:
    milliseconds = int(round(seconds * 1000))
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def srt(words: list[Word]) -> str:
    blocks = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n"
        for i, s in enumerate(segments(words), start=1)
    ]
    return "\n".join(blocks)


def vtt(words: list[Word]) -> str:
    blocks = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n" for s in segments(words)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def verbose_json(words: list[Word], duration: float, with_words: bool, with_segments: bool) -> dict:
    """OpenAI's verbose_json shape; fields Whisper-specific to decoding are filled neutrally."""
    body: dict = {
        "task": "transcribe",
        "language": "english",
        "duration": round(duration, 3),
        "text": transcript(words),
    }
    if with_segments:
        body["segments"] = [
            {
                "id": i,
                "seek": 0,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": _mean_log(s.words),
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
            for i, s in enumerate(segments(words))
        ]
    if with_words:
        body["words"] = [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in words]
    return body


def _mean_log(words: list[Word]) -> float:
    return round(sum(math.log(max(w.confidence, 1e-6)) for w in words) / len(words), 4)


def server_event(payload: dict) -> str:
    """One server-sent event carrying `payload` as JSON (the `data:` field, as OpenAI streams)."""
    return f"data: {json.dumps(payload)}\n\n"
