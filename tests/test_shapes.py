"""Shape buckets for GPU providers: a short ladder of lengths, padding that keeps every value."""

from __future__ import annotations

import numpy as np
import pytest

from app.shapes import ShapeBuckets


def test_frames_double_from_the_shortest_bucket_up_to_the_longest_window():
    buckets = ShapeBuckets(max_frames=2001, max_batch=8)
    assert buckets.frames == [128, 256, 512, 1024, 2016]  # the top one rounded up to a multiple of 16
    assert buckets.batches == [1, 8]
    assert len(buckets.shapes()) == 10
    assert ShapeBuckets(max_frames=100, max_batch=1).shapes() == [(1, 112)]


@pytest.mark.parametrize(("rows", "frames", "expected"), [(1, 40, (1, 128)), (2, 129, (8, 256)), (8, 2016, (8, 2016))])
def test_a_batch_is_padded_to_the_smallest_bucket_that_holds_it(rows, frames, expected):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((rows, 64, frames)).astype(np.float32)
    lengths = np.arange(frames - rows + 1, frames + 1, dtype=np.int64)
    padded, padded_lengths = ShapeBuckets(max_frames=2001, max_batch=8).pad(features, lengths)
    assert (padded.shape[0], padded.shape[2]) == expected
    np.testing.assert_array_equal(padded[:rows, :, :frames], features)
    assert not padded[:rows, :, frames:].any() and not padded[rows:].any()
    np.testing.assert_array_equal(padded_lengths[:rows], lengths)
    assert (padded_lengths[rows:] == expected[1]).all()


def test_a_batch_beyond_every_bucket_keeps_its_shape():
    features = np.ones((9, 64, 3000), np.float32)
    padded, _ = ShapeBuckets(max_frames=2001, max_batch=8).pad(features, np.full(9, 3000))
    assert padded.shape == features.shape
