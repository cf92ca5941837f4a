"""How sure a WER change is: word errors per utterance and a paired bootstrap over utterances.

On a few hundred utterances a quantized model's WER change of a point can be a handful of words
that flip either way; the interval says whether a change is distinguishable from zero (or from a
target) on this manifest.
"""

from __future__ import annotations

import jiwer
import numpy as np

DRAWS_PER_CHUNK = 1000  # resamples drawn at once: memory is DRAWS_PER_CHUNK x utterances int64


def word_errors(references: list[str], hypotheses: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Edits (substitutions + deletions + insertions) and reference words, each [utterances];
    their sums' ratio is jiwer's corpus WER."""
    output = jiwer.process_words(references, hypotheses)
    edits = [
        sum(
            max(chunk.ref_end_idx - chunk.ref_start_idx, chunk.hyp_end_idx - chunk.hyp_start_idx)
            for chunk in chunks
            if chunk.type != "equal"
        )
        for chunks in output.alignments
    ]
    return np.array(edits, dtype=np.int64), np.array([len(words) for words in output.references], dtype=np.int64)


def paired_bootstrap_interval(
    edits_first: np.ndarray,
    edits_second: np.ndarray,
    words: np.ndarray,
    confidence: float = 0.95,
    draws: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Interval of WER(second) - WER(first), resampling the same utterances for both with replacement."""
    if not len(edits_first) == len(edits_second) == len(words) > 0:
        raise ValueError("need the same, non-empty set of utterances for both")
    rng = np.random.default_rng(seed)
    difference = edits_second - edits_first
    changes = []
    for start in range(0, draws, DRAWS_PER_CHUNK):
        picks = rng.integers(0, len(words), size=(min(DRAWS_PER_CHUNK, draws - start), len(words)))
        changes.append(difference[picks].sum(1) / np.maximum(words[picks].sum(1), 1))
    tail = (1 - confidence) / 2
    low, high = np.quantile(np.concatenate(changes), [tail, 1 - tail])
    return float(low), float(high)
