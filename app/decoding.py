"""CTC greedy decoding with word times and confidences from per-frame scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # mean over the word's emitting frames of the top class probability, 0-1


def transcript(words: list[Word]) -> str:
    return " ".join(w.word for w in words)


def frame_scores(logits: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """logits [classes, T'] (integer codes times scale, or float with scale 1) ->
    (argmax class [T'], its softmax probability [T'])."""
    values = logits.astype(np.float32) * np.float32(scale)
    values -= values.max(axis=0, keepdims=True)
    probabilities = np.exp(values)
    probabilities /= probabilities.sum(axis=0, keepdims=True)
    best = probabilities.argmax(axis=0)
    return best, probabilities[best, np.arange(probabilities.shape[1])]


def greedy_words(tokens: np.ndarray, probabilities: np.ndarray, labels: list[str], frame_seconds: float) -> list[Word]:
    """tokens [T'] argmax classes (blank = len(labels)), probabilities [T'] -> words in order.

    A character spans the consecutive frames that emit it; a word runs from its first character's
    first frame to its last character's last frame; spaces separate words."""
    blank, space = len(labels), labels.index(" ") if " " in labels else -1
    words: list[Word] = []
    letters: list[str] = []
    frames: list[int] = []
    previous = blank

    def close() -> None:
        if letters:
            confidence = float(np.mean(probabilities[frames]))
            words.append(
                Word(
                    "".join(letters), frames[0] * frame_seconds, (frames[-1] + 1) * frame_seconds, round(confidence, 4)
                )
            )
            letters.clear()
            frames.clear()

    for t, token in enumerate(int(x) for x in tokens):
        if token == blank:
            previous = blank
            continue
        if token == space:
            close()
        elif token == previous:
            frames.append(t)
        else:
            letters.append(labels[token])
            frames.append(t)
        previous = token
    close()
    return words
