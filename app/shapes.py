"""Few input shapes for GPU providers: pad every batch up to one of a handful of [B, F, T] buckets.

ONNX Runtime's CUDA provider pays for every input shape it has not seen: measured on an H100
(ORT 1.31.1, cuDNN 9.14), about 3 s per new shape with cuDNN's exhaustive algorithm search and
0.05-3 s with its heuristic search, then 1-4 ms per run of the shipped model. Real audio has a new
length almost every request, so the service pads the time axis to a doubling ladder of frame
counts and the batch to 1 or the largest batch, and runs each bucket once at startup. Padding is
exact: the graphs mask every frame past each row's length, and padded rows are dropped.
"""

from __future__ import annotations

import numpy as np

PAD_SHAPES = ("auto", "on", "off")  # when to pad: GPU providers only, always, never
MIN_FRAMES = 128  # 1.28 s of 10 ms feature frames: the shortest bucket
FRAME_MULTIPLE = 16  # NeMo's pad_to: feature lengths are padded to multiples of 16


class ShapeBuckets:
    def __init__(self, max_frames: int, max_batch: int):
        """max_frames: feature frames of the longest window; max_batch: windows per batch at most."""
        top = -(-max_frames // FRAME_MULTIPLE) * FRAME_MULTIPLE
        frames, length = [], MIN_FRAMES
        while length < top:
            frames.append(length)
            length *= 2
        self.frames = frames + [top]
        self.batches = sorted({1, max_batch})

    def shapes(self) -> list[tuple[int, int]]:
        """Every (batch, frames) bucket, smallest first."""
        return [(b, t) for b in self.batches for t in self.frames]

    def pad(self, features: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """features [B, F, T], lengths [B] -> zero-padded [B', F, T'] in a bucket, lengths [B'] (extra rows
        get the full length); the first B rows give what they gave unpadded. A batch larger than every
        bucket keeps its size (the batcher never makes one)."""
        rows, bins, frames = features.shape
        new_rows = next((b for b in self.batches if b >= rows), rows)
        new_frames = next((t for t in self.frames if t >= frames), frames)
        padded = np.zeros((new_rows, bins, new_frames), np.float32)
        padded[:rows, :, :frames] = features
        padded_lengths = np.full(new_rows, new_frames, np.int64)
        padded_lengths[:rows] = lengths
        return padded, padded_lengths
