"""CTC: log-probabilities from logits, and greedy decoding of per-frame classes -> text."""

from __future__ import annotations

import numpy as np


def greedy_text(tokens: np.ndarray, length: int, labels: list[str]) -> str:
    """tokens [T'] class ids (blank = len(labels)); merge repeats, drop blanks, join labels."""
    blank = len(labels)
    valid = np.asarray(tokens[:length])
    keep = np.ones(len(valid), bool)
    keep[1:] = valid[1:] != valid[:-1]
    return "".join(labels[t] for t in valid[keep] if t != blank).strip()


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """float32 log-probabilities along axis."""
    values = logits.astype(np.float32)
    values = values - values.max(axis=axis, keepdims=True)
    return values - np.log(np.exp(values).sum(axis=axis, keepdims=True))


def frame_log_probabilities(logits: np.ndarray, scale: float) -> np.ndarray:
    """One utterance's logits [classes, T'] (integer codes times scale, or float with scale 1) ->
    float32 log-probabilities [T', classes]."""
    return log_softmax(logits.T.astype(np.float32) * np.float32(scale))
