"""Lexicon beam searches in worker processes, so that concurrent searches use every core.

The search is C++ (flashlight) but calls back into a Python language model for every word, so it
holds the GIL: threads run one search at a time. Each worker here is a separate Python process
(`python -m quantizer.lexicon_workers`) with its own `LexiconDecoder`; a search borrows an idle
one. Workers read requests from stdin and answer on stdout, and end when stdin closes, so none
outlives the process that started them, even one killed outright.

Frames on the pipes, all little-endian:
  request   uint32 frames, uint32 classes, float32 log-probabilities [frames, classes]
  answer    int32 n >= 0, then int64 CTC path [n]; or int32 -n, then n bytes of UTF-8 error text
  started   the same answer with n = 0 once the decoder is built (or the error that stopped it)
"""

from __future__ import annotations

import json
import logging
import os
import queue
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import BinaryIO

import numpy as np

from quantizer.lexicon import LexiconDecoder, LexiconSettings, joined_paths, pieces_at_pauses

log = logging.getLogger("qasr.lexicon_workers")

REQUEST = struct.Struct("<II")
ANSWER = struct.Struct("<i")
CLOSE_TIMEOUT_S = 5.0


def worker_count(requested: int) -> int:
    """`requested` workers, or with 0 one per core this process may run on (its CPU affinity where
    the system has one, as Linux does; otherwise every core)."""
    if requested:
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class SearchError(RuntimeError):
    """A worker could not start, failed a search, or stopped during one."""


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"the pipe closed after {len(data)} of {size} bytes")
    return data


def _write_answer(stream: BinaryIO, path: np.ndarray | None = None, error: str = "") -> None:
    if error:
        text = error.encode()
        stream.write(ANSWER.pack(-len(text)) + text)
    else:
        path = np.zeros(0, np.int64) if path is None else path
        stream.write(ANSWER.pack(len(path)) + path.astype("<i8").tobytes())
    stream.flush()


def _read_answer(stream: BinaryIO) -> np.ndarray:
    (length,) = ANSWER.unpack(_read_exactly(stream, ANSWER.size))
    if length < 0:
        raise SearchError(_read_exactly(stream, -length).decode(errors="replace"))
    return np.frombuffer(_read_exactly(stream, 8 * length), "<i8").astype(np.int64)


def serve_searches(labels: list[str], settings: LexiconSettings, requests: BinaryIO, answers: BinaryIO) -> None:
    """A worker's life: build the decoder, then answer requests until `requests` closes."""
    try:
        decoder = LexiconDecoder(labels, settings)
    except Exception as error:
        _write_answer(answers, error=f"the lexicon decoder could not be built: {type(error).__name__}: {error}")
        return
    _write_answer(answers)
    while header := requests.read(REQUEST.size):
        frames, classes = REQUEST.unpack(header)
        log_probabilities = np.frombuffer(_read_exactly(requests, 4 * frames * classes), "<f4")
        try:
            path = decoder.best_path(log_probabilities.reshape(frames, classes))
        except Exception as error:
            _write_answer(answers, error=f"{type(error).__name__}: {error}")
        else:
            _write_answer(answers, path)


class _Worker:
    def __init__(self, command: list[str]):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def started(self) -> None:
        """Wait for the worker's decoder; SearchError with its reason if it could not build one."""
        try:
            _read_answer(self.process.stdout)
        except EOFError:
            raise SearchError(f"a search worker stopped while starting (exit code {self.process.wait()})") from None

    def search(self, log_probabilities: np.ndarray) -> np.ndarray:
        frames, classes = log_probabilities.shape
        self.process.stdin.write(REQUEST.pack(frames, classes) + log_probabilities.astype("<f4").tobytes())
        self.process.stdin.flush()
        return _read_answer(self.process.stdout)

    def close(self) -> None:
        if self.process.stdin:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.process.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class SearchWorkers:
    """`count` worker processes, each with its own LexiconDecoder(labels, settings); `best_path` is
    LexiconDecoder's, callable from many threads at once."""

    def __init__(self, labels: list[str], settings: LexiconSettings, count: int):
        if count < 1:
            raise ValueError(f"search workers: need at least 1, got {count}")
        self.classes, self.count, self.longest = len(labels) + 1, count, settings.max_frames
        self.blank, self.space = len(labels), labels.index(" ") if " " in labels else -1  # no space: workers refuse
        self._pieces = ThreadPoolExecutor(count, thread_name_prefix="lexicon-piece")  # a long input's pieces
        self._command = [sys.executable, "-m", "quantizer.lexicon_workers", json.dumps([labels, asdict(settings)])]
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: list[_Worker] = []
        self._closed = False
        starting = [self._start() for _ in range(count)]  # all build their decoders at once
        try:
            for worker in starting:
                worker.started()
        except SearchError:
            self.close()
            raise
        for worker in starting:
            self._idle.put(worker)

    @property
    def busy(self) -> int:
        """Workers searching now (approximate while one is being replaced)."""
        return self.count - self._idle.qsize()

    def _start(self) -> _Worker:
        worker = _Worker(self._command)
        self._all.append(worker)
        return worker

    def best_path(self, log_probabilities: np.ndarray) -> np.ndarray:
        """log_probabilities float [T', classes] -> the best lexicon-constrained CTC path, int64 [T'].
        A long input's pieces (LexiconDecoder.best_path) go to several workers at once."""
        if log_probabilities.ndim != 2 or log_probabilities.shape[1] != self.classes:
            raise ValueError(f"expected [frames, {self.classes}] log-probabilities, got {log_probabilities.shape}")
        pieces = pieces_at_pauses(log_probabilities, self.blank, self.space, self.longest)
        if len(pieces) == 1:
            return self._search(log_probabilities)
        return joined_paths(list(self._pieces.map(self._search, pieces)), self.blank, self.space)

    def _search(self, log_probabilities: np.ndarray) -> np.ndarray:
        worker = self._idle.get()
        try:
            path = worker.search(log_probabilities)
        except (EOFError, OSError, ValueError):  # ValueError: its pipe was closed by close()
            code = worker.process.poll()
            if self._closed:
                raise SearchError("the search workers have been closed (the service is stopping)") from None
            log.error("a search worker stopped during a search (exit code %s); starting another", code)
            worker.close()
            self._all.remove(worker)
            worker = self._start()
            worker.started()
            raise SearchError(f"the search worker stopped during this search (exit code {code})") from None
        finally:
            self._idle.put(worker)
        return path

    def close(self) -> None:
        """End every worker: each sees its stdin close and exits."""
        self._closed = True
        self._pieces.shutdown(wait=False, cancel_futures=True)
        for worker in self._all:
            worker.close()
        self._all.clear()

    def __enter__(self) -> SearchWorkers:
        return self

    def __exit__(self, *exception) -> None:
        self.close()


if __name__ == "__main__":
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # whatever a library prints goes to the log, not the pipe
    labels, fields = json.loads(sys.argv[1])
    serve_searches(labels, LexiconSettings(**fields), sys.stdin.buffer, answers)
