"""Words with times and confidences from a CTC path (greedy or lexicon beam search) and its frame scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # mean over the word's emitting frames of the probability of the class emitted, 0-1


def transcript(words: list[Word]) -> str:
    return " ".join(w.word for w in words)


def path_probabilities(log_probabilities: np.ndarray, path: np.ndarray) -> np.ndarray:
    """log_probabilities [T', classes], path [T'] classes -> each frame's probability of its class [T']."""
    return np.exp(log_probabilities[np.arange(len(path)), path])


def path_words(
    tokens: np.ndarray, probabilities: np.ndarray, labels: list[str], frame_seconds: float, first_frame: int = 0
) -> list[Word]:
    """tokens [T'] a CTC path's classes (blank = len(labels)), probabilities [T'] -> words in order;
    first_frame: the output frame tokens[0] is, for the words' times.

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
                    "".join(letters),
                    (first_frame + frames[0]) * frame_seconds,
                    (first_frame + frames[-1] + 1) * frame_seconds,
                    round(confidence, 4),
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
