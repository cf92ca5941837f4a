"""What a new input shape costs a provider, and what the service's shape buckets save.

    .venv/bin/python benchmarks/shape_cost.py --model DIR --backend qdq --device cuda [--lengths 12]

Runs `--lengths` utterances of distinct lengths (2-20 s of random features) through one backend
twice: as they come, where every length is a new shape, and padded by app.shapes.ShapeBuckets
after its one-off warm-up, as the service does on GPU providers. Prints the warm-up, the first and
the second pass over the lengths, in ms. On the CUDA provider every new shape cost about 3 s
(README, "On a GPU"); on the CPU it costs nothing much.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from app.shapes import ShapeBuckets
from quantizer.features import LogMelFrontEnd
from quantizer.integer_model import IntegerModel
from quantizer.runtime import Recognizer


def timed_pass(recognizer: Recognizer, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    start = time.perf_counter()
    for features, lengths in batches:
        recognizer(features, lengths)
    return 1000 * (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a folder written by qasr quantize")
    parser.add_argument("--backend", default="qdq")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--lengths", type=int, default=12, help="distinct utterance lengths")
    parser.add_argument("--window-seconds", type=float, default=20.0, help="the service's QASR_CHUNK_SECONDS")
    parser.add_argument("--max-batch", type=int, default=8, help="the service's QASR_MAX_BATCH_SIZE")
    args = parser.parse_args()
    front_end = LogMelFrontEnd.of(IntegerModel.load(args.model))
    bins, frames_per_second = front_end.bins, front_end.frames_per_second
    rng = np.random.default_rng(0)
    frames = np.linspace(2 * frames_per_second, args.window_seconds * frames_per_second, args.lengths).astype(int)
    utterances = [(rng.standard_normal((1, bins, t)).astype(np.float32), np.array([t])) for t in frames]
    # Two sessions, so that the padded one has seen none of the raw lengths.
    raw = Recognizer(args.model, args.backend, args.device, args.threads)
    padded = Recognizer(args.model, args.backend, args.device, args.threads)
    buckets = ShapeBuckets(int(args.window_seconds * frames_per_second) + 1, args.max_batch)
    warm_up = timed_pass(padded, [(np.zeros((b, bins, t), np.float32), np.full(b, t)) for b, t in buckets.shapes()])
    bucketed = [buckets.pad(f, n) for f, n in utterances]
    print(f"{args.backend} on {raw.provider}, {args.lengths} lengths of 2-{args.window_seconds:g} s, ms")
    print("| inputs | warm-up | first pass | second pass |")
    print("| --- | --- | --- | --- |")
    print(f"| as they come | 0 | {timed_pass(raw, utterances):.0f} | {timed_pass(raw, utterances):.0f} |")
    first, second = timed_pass(padded, bucketed), timed_pass(padded, bucketed)
    print(f"| padded to {len(buckets.shapes())} shapes | {warm_up:.0f} | {first:.0f} | {second:.0f} |")


if __name__ == "__main__":
    main()
