"""Lexicon searches in worker processes: the in-process decoder's paths, from many threads, and a
pool that outlives a worker's death, and no worker that outlives its pool's owner."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from quantizer.ctc import log_softmax
from quantizer.lexicon import SHIPPED_LANGUAGE_MODEL, LexiconDecoder, LexiconSettings, pieces_at_pauses
from quantizer.lexicon_workers import SearchError, SearchWorkers
from quantizer.nemo_configs import ENGLISH_LABELS

CLASSES = len(ENGLISH_LABELS) + 1
# The shipped trigram (its state per search is what a worker must keep to itself); a word score
# makes random frames spell words, so the paths have words to get wrong.
SETTINGS = LexiconSettings(language_model=str(SHIPPED_LANGUAGE_MODEL), word_score=8.0, beam=16)


@pytest.fixture(scope="module")
def in_process():
    return LexiconDecoder(ENGLISH_LABELS, SETTINGS)


@pytest.fixture(scope="module")
def workers():
    pool = SearchWorkers(ENGLISH_LABELS, SETTINGS, 2)
    yield pool
    pool.close()


def random_frames(seed: int, frames: int) -> np.ndarray:
    """Log-probabilities [frames, classes] with a few confident letters per stretch."""
    logits = np.random.default_rng(seed).normal(0, 3, (frames, CLASSES)).astype(np.float32)
    return log_softmax(logits)


def test_workers_find_the_in_process_paths_from_many_threads_at_once(workers, in_process):
    inputs = [random_frames(seed, frames) for seed, frames in enumerate([80, 7, 150, 1, 0, 40])]
    expected = [in_process.best_path(x) for x in inputs]
    assert sum(len(np.unique(p)) for p in expected) > 3 * len(inputs)  # paths that spell something
    with ThreadPoolExecutor(4) as threads:
        found = list(threads.map(workers.best_path, inputs * 2))
    for path, want in zip(found, expected * 2, strict=True):
        assert path.dtype == np.int64
        np.testing.assert_array_equal(path, want)


def test_a_long_input_is_searched_in_pieces_on_several_workers_with_the_in_process_result():
    settings = dataclasses.replace(SETTINGS, max_frames=60)
    frames = random_frames(5, 400)
    assert len(pieces_at_pauses(frames, len(ENGLISH_LABELS), ENGLISH_LABELS.index(" "), 60)) >= 7
    with SearchWorkers(ENGLISH_LABELS, settings, 2) as pool:
        np.testing.assert_array_equal(
            pool.best_path(frames), LexiconDecoder(ENGLISH_LABELS, settings).best_path(frames)
        )


def test_a_wrong_shape_is_refused_before_it_reaches_a_worker(workers):
    with pytest.raises(ValueError, match=f"expected \\[frames, {CLASSES}\\]"):
        workers.best_path(np.zeros((5, CLASSES - 1), np.float32))
    assert workers.best_path(random_frames(0, 10)).shape == (10,)


def test_a_search_that_fails_in_a_worker_is_an_error_and_the_worker_lives_on():
    pool = SearchWorkers(ENGLISH_LABELS, SETTINGS, 1)
    try:
        worker = pool._idle.get()
        assert pool.busy == 1
        with pytest.raises(SearchError, match="expected 29 classes per frame, got 3"):
            worker.search(np.zeros((4, 3), np.float32))  # past the shape check: the worker's own error
        pool._idle.put(worker)
        assert pool.busy == 0
        assert pool.best_path(random_frames(1, 30)).shape == (30,)
    finally:
        pool.close()


def test_a_worker_killed_mid_service_fails_one_search_and_is_replaced(in_process):
    pool = SearchWorkers(ENGLISH_LABELS, SETTINGS, 1)
    try:
        (victim,) = pool._all
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        with pytest.raises(SearchError, match="stopped during this search"):
            pool.best_path(random_frames(2, 40))
        (replacement,) = pool._all
        assert replacement is not victim and replacement.process.poll() is None
        frames = random_frames(3, 40)
        np.testing.assert_array_equal(pool.best_path(frames), in_process.best_path(frames))
    finally:
        pool.close()


def test_a_decoder_that_cannot_be_built_stops_the_start_with_its_reason():
    with pytest.raises(SearchError, match="needs a space label"):
        SearchWorkers([c for c in ENGLISH_LABELS if c != " "], SETTINGS, 2)
    with pytest.raises(ValueError, match="at least 1"):
        SearchWorkers(ENGLISH_LABELS, SETTINGS, 0)


def test_closing_ends_every_worker_and_starts_no_other():
    pool = SearchWorkers(ENGLISH_LABELS, SETTINGS, 2)
    processes = [worker.process for worker in pool._all]
    pool.close()
    assert [p.returncode for p in processes] == [0, 0]
    with pytest.raises(SearchError, match="have been closed"):  # a request still in flight at shutdown
        pool.best_path(random_frames(4, 20))
    assert pool._all == []  # and no worker was started in its place


def test_workers_end_when_the_service_that_started_them_is_killed(tmp_path):
    """A service killed outright closes its end of the pipes; its workers see that and exit."""
    script = (
        "import sys\n"
        "from quantizer.lexicon_workers import SearchWorkers\n"
        "from quantizer.lexicon import LexiconSettings\n"
        "from quantizer.nemo_configs import ENGLISH_LABELS\n"
        "pool = SearchWorkers(ENGLISH_LABELS, LexiconSettings(words=2000), 2)\n"
        "print(*[w.process.pid for w in pool._all], flush=True)\n"
        "sys.stdin.read()\n"
    )
    service = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in service.stdout.readline().split()]
    assert len(pids) == 2 and all(running(pid) for pid in pids)
    service.kill()
    service.wait()
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(running(pid) for pid in pids)


def running(pid: int) -> bool:
    """Whether a process exists and has not ended (a zombie, not yet reaped, has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status
