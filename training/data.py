"""Training batches: utterances of similar length, at most a given amount of padded audio each."""

from __future__ import annotations

import random

from quantizer.manifest import Utterance


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
