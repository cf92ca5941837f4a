"""Lexicon searches in worker processes: the in-process decoder's paths, from many threads, workers
that share their template's decoder, a pool that outlives a worker's or its template's death, and no
process that outlives its pool's owner."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from quantizer.ctc import log_softmax
from quantizer.lexicon import SHIPPED_LANGUAGE_MODEL, LexiconDecoder, LexiconSettings, pieces_at_pauses
from quantizer.lexicon_workers import SearchError, SearchWorkers, _Template
from quantizer.nemo_configs import ENGLISH_LABELS
from tests.processes import ended_within, running

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


def test_hotwords_reach_the_workers_and_an_unknown_one_is_their_error(workers, in_process):
    frames = random_frames(7, 120)
    common = [in_process.words[i] for i in range(0, 40_000, 400)]  # a list wide enough to change the path
    boosted = in_process.best_path(frames, common)
    assert not np.array_equal(boosted, in_process.best_path(frames))
    np.testing.assert_array_equal(workers.best_path(frames, common), boosted)
    phrases = [f"{first} {second}" for first, second in zip(common[::2], common[1::2], strict=True)]
    np.testing.assert_array_equal(workers.best_path(frames, phrases), in_process.best_path(frames, phrases))
    with pytest.raises(SearchError, match="UnknownWords: not in the lexicon: zzqxv"):
        workers.best_path(frames, ["zzqxv"])
    np.testing.assert_array_equal(workers.best_path(frames), in_process.best_path(frames))  # workers live on


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
            worker.search(np.zeros((4, 3), np.float32), ())  # past the shape check: the worker's own error
        pool._idle.put(worker)
        assert pool.busy == 0
        assert pool.best_path(random_frames(1, 30)).shape == (30,)
    finally:
        pool.close()


def test_a_worker_killed_mid_service_fails_one_search_and_is_replaced(in_process):
    pool = SearchWorkers(ENGLISH_LABELS, SETTINGS, 1)
    try:
        (victim,) = pool._all
        os.kill(victim.pid, signal.SIGKILL)
        assert ended_within([victim.pid], 5)
        with pytest.raises(SearchError, match=f"stopped during this search \\(process {victim.pid}\\)"):
            pool.best_path(random_frames(2, 40))
        (replacement,) = pool._all
        assert replacement is not victim and running(replacement.pid)
        frames = random_frames(3, 40)
        np.testing.assert_array_equal(pool.best_path(frames), in_process.best_path(frames))
    finally:
        pool.close()


def test_a_template_that_ends_before_answering_is_an_error_with_its_exit_code():
    with pytest.raises(SearchError, match=r"template stopped while starting \(exit code 3\)"):
        _Template([sys.executable, "-c", "raise SystemExit(3)"])


def test_a_decoder_that_cannot_be_built_stops_the_start_with_its_reason():
    with pytest.raises(SearchError, match="needs a space label"):
        SearchWorkers([c for c in ENGLISH_LABELS if c != " "], SETTINGS, 2)
    with pytest.raises(ValueError, match="at least 1"):
        SearchWorkers(ENGLISH_LABELS, SETTINGS, 0)


def test_workers_go_on_without_their_template_and_a_new_one_forks_the_next(in_process):
    pool = SearchWorkers(ENGLISH_LABELS, SETTINGS, 2)
    try:
        first_template = pool._template.process
        first_template.kill()
        first_template.wait()
        frames = random_frames(6, 40)
        np.testing.assert_array_equal(pool.best_path(frames), in_process.best_path(frames))  # workers live on
        victim = pool._all[0]
        os.kill(victim.pid, signal.SIGKILL)
        assert ended_within([victim.pid], 5)
        with ThreadPoolExecutor(2) as threads:  # one of the two searches meets the dead worker
            outcomes = [f.exception() for f in [threads.submit(pool.best_path, frames) for _ in range(2)]]
        assert [type(e) for e in outcomes].count(SearchError) == 1
        assert pool._template.process is not first_template and pool._template.process.poll() is None
        assert len(pool._all) == 2 and all(running(worker.pid) for worker in pool._all)
        np.testing.assert_array_equal(pool.best_path(frames), in_process.best_path(frames))
    finally:
        pool.close()


def memory_mib(pid: int) -> dict[str, float]:
    """/proc/PID/smaps_rollup in MiB: Rss (resident), Private_Clean and Private_Dirty (held by it alone), ..."""
    lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    return {line.split()[0].rstrip(":"): int(line.split()[1]) / 1024 for line in lines}


def private_mib(pid: int) -> float:
    memory = memory_mib(pid)
    return memory["Private_Clean"] + memory["Private_Dirty"]


def test_workers_share_the_decoder_their_template_built():
    """The shipped trigram and its lexicon trie (about 130 MB) are built once, in the template; the
    workers forked from it hold privately only what their searches wrote."""
    with SearchWorkers(ENGLISH_LABELS, SETTINGS, 2) as pool:
        with ThreadPoolExecutor(2) as threads:
            list(threads.map(pool.best_path, [random_frames(seed, 500) for seed in range(6)]))
        template_mib = memory_mib(pool._template.process.pid)["Rss"]
        workers_mib = [private_mib(worker.pid) for worker in pool._all]
    assert template_mib > 100
    assert max(workers_mib) < template_mib / 4, (template_mib, workers_mib)  # built in each: > template_mib


def test_closing_ends_every_worker_and_its_template_and_starts_no_other():
    pool = SearchWorkers(ENGLISH_LABELS, SETTINGS, 2)
    pids, template = [worker.pid for worker in pool._all], pool._template.process
    pool.close()
    assert ended_within(pids, 5) and template.returncode == 0
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
        "print(pool._template.process.pid, *[w.pid for w in pool._all], flush=True)\n"
        "sys.stdin.read()\n"
    )
    service = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in service.stdout.readline().split()]
    assert len(pids) == 3 and all(running(pid) for pid in pids)  # the template and two workers
    service.kill()
    service.wait()
    assert ended_within(pids, 10)
