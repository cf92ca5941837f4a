"""Lexicon beam searches in worker processes, so that concurrent searches use every core.

The search is C++ (flashlight) but calls back into a Python language model for every word, so it
holds the GIL: threads run one search at a time. Workers are separate processes, forked from one
template process (`python -m quantizer.lexicon_workers`) that built the LexiconDecoder once: its
lexicon trie and language model (about 130 MB with the shipped trigram) are then shared by every
worker, copy-on-write, instead of built again in each. A search borrows an idle worker.

The template reads fork orders on its stdin, a Unix socket: each carries the two pipe ends a new
worker will use (requests in, answers out) and is answered with the worker's pid. A worker answers
searches until its request pipe closes; the template ends when its socket closes. So none outlives
the process that started them, even one killed outright.

Frames on the pipes and the socket, all little-endian:
  request   uint32 frames, uint32 classes, uint32 n, float32 log-probabilities [frames, classes],
            then n bytes of UTF-8 hotwords, one per line
  answer    int32 n >= 0, then int64 CTC path [n]; or int32 -n, then n bytes of UTF-8 error text
  started   the same answer with n = 0 once the decoder is built (or the error that stopped it):
            from the template on its socket, and from each worker on its answer pipe
  fork      one byte and two file descriptors (SCM_RIGHTS); answered with int32 pid, or -errno
"""

from __future__ import annotations

import gc
import json
import logging
import os
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import BinaryIO

import numpy as np

from quantizer.lexicon import LexiconDecoder, LexiconSettings, joined_paths, pieces_at_pauses

log = logging.getLogger("qasr.lexicon_workers")

REQUEST = struct.Struct("<III")
ANSWER = struct.Struct("<i")
PID = struct.Struct("<i")
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


def _answer_bytes(path: np.ndarray | None = None, error: str = "") -> bytes:
    if error:
        text = error.encode()
        return ANSWER.pack(-len(text)) + text
    path = np.zeros(0, np.int64) if path is None else path
    return ANSWER.pack(len(path)) + path.astype("<i8").tobytes()


def _write_answer(stream: BinaryIO, path: np.ndarray | None = None, error: str = "") -> None:
    stream.write(_answer_bytes(path, error))
    stream.flush()


def _read_answer(stream: BinaryIO) -> np.ndarray:
    (length,) = ANSWER.unpack(_read_exactly(stream, ANSWER.size))
    if length < 0:
        raise SearchError(_read_exactly(stream, -length).decode(errors="replace"))
    return np.frombuffer(_read_exactly(stream, 8 * length), "<i8").astype(np.int64)


def serve_searches(decoder: LexiconDecoder, requests: BinaryIO, answers: BinaryIO) -> None:
    """A worker's life: say it has started, then answer requests until `requests` closes."""
    _write_answer(answers)
    while header := requests.read(REQUEST.size):
        frames, classes, hotword_bytes = REQUEST.unpack(header)
        log_probabilities = np.frombuffer(_read_exactly(requests, 4 * frames * classes), "<f4")
        hotwords = _read_exactly(requests, hotword_bytes).decode().split("\n") if hotword_bytes else []
        try:
            path = decoder.best_path(log_probabilities.reshape(frames, classes), hotwords)
        except Exception as error:
            _write_answer(answers, error=f"{type(error).__name__}: {error}")
        else:
            _write_answer(answers, path)


def _reap_workers(signal_number: int, frame: object) -> None:
    """The template's SIGCHLD handler: collect ended workers, and say which did not end cleanly."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if status:
            how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit code {os.WEXITSTATUS(status)}"
            print(f"qasr: search worker {pid} ended by {how}", file=sys.stderr, flush=True)


def serve_forks(labels: list[str], settings: LexiconSettings, orders: socket.socket) -> None:
    """The template's life: build the decoder, then fork a worker for every order until `orders` closes."""
    try:
        decoder = LexiconDecoder(labels, settings)
    except Exception as error:
        orders.sendall(_answer_bytes(error=f"the lexicon decoder could not be built: {type(error).__name__}: {error}"))
        return
    gc.freeze()  # the collector would otherwise write to every object it scans, copying shared pages
    signal.signal(signal.SIGCHLD, _reap_workers)
    orders.sendall(_answer_bytes())
    while True:
        message, fds, _, _ = socket.recv_fds(orders, 1, 2)
        if not message:
            return
        requests, answers = (os.fdopen(fd, mode) for fd, mode in zip(fds, ("rb", "wb"), strict=True))
        try:
            pid = os.fork()
        except OSError as error:
            requests.close()
            answers.close()
            orders.sendall(PID.pack(-error.errno))
            continue
        if pid == 0:
            exit_code = 0
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                orders.close()
                serve_searches(decoder, requests, answers)
            except BaseException:
                traceback.print_exc()
                exit_code = 1
            finally:
                os._exit(exit_code)  # no interpreter shutdown: the template's state is not this process's to tear down
        requests.close()
        answers.close()
        orders.sendall(PID.pack(pid))


class _Worker:
    """One forked worker, seen through its two pipes."""

    def __init__(self, pid: int, requests: BinaryIO, answers: BinaryIO):
        self.pid, self.requests, self.answers = pid, requests, answers

    def started(self) -> None:
        """Wait for the worker's first answer; SearchError if it ended first."""
        try:
            _read_answer(self.answers)
        except EOFError:
            raise SearchError(f"search worker {self.pid} stopped while starting") from None

    def search(self, log_probabilities: np.ndarray, hotwords: Sequence[str]) -> np.ndarray:
        frames, classes = log_probabilities.shape
        text = "\n".join(hotwords).encode()
        self.requests.write(REQUEST.pack(frames, classes, len(text)) + log_probabilities.astype("<f4").tobytes() + text)
        self.requests.flush()
        return _read_answer(self.answers)

    def close(self) -> None:
        """Close its request pipe, so that it ends, and wait for its answer pipe to close."""
        if self.answers.closed:
            return
        try:
            self.requests.close()
        except BrokenPipeError:
            pass
        ended, _, _ = select.select([self.answers], [], [], CLOSE_TIMEOUT_S)
        if not ended:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.answers.close()


class _Template:
    """The process that holds the built decoder and forks workers from it."""

    def __init__(self, command: list[str]):
        self.orders, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            self.process = subprocess.Popen(command, stdin=theirs)
        self.replies, self.lock = self.orders.makefile("rb"), threading.Lock()
        try:
            _read_answer(self.replies)
        except EOFError:
            self.close()
            code = self.process.returncode
            raise SearchError(f"the search template stopped while starting (exit code {code})") from None
        except SearchError:
            self.close()
            raise

    def fork(self) -> _Worker:
        """A new worker, started; OSError or EOFError if the template is gone."""
        requests_read, requests_write = os.pipe()
        answers_read, answers_write = os.pipe()
        try:
            with self.lock:
                socket.send_fds(self.orders, [b"f"], [requests_read, answers_write])
                (pid,) = PID.unpack(_read_exactly(self.replies, PID.size))
        finally:
            os.close(requests_read)
            os.close(answers_write)
        requests, answers = os.fdopen(requests_write, "wb"), os.fdopen(answers_read, "rb")
        if pid < 0:
            requests.close()
            answers.close()
            raise SearchError(f"the search template could not fork a worker: {os.strerror(-pid)}")
        worker = _Worker(pid, requests, answers)
        worker.started()
        return worker

    def close(self) -> None:
        self.replies.close()
        self.orders.close()
        try:
            self.process.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class SearchWorkers:
    """`count` worker processes sharing one LexiconDecoder(labels, settings); `best_path` is
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
        self._template = _Template(self._command)
        try:
            for _ in range(count):
                self._idle.put(self._start())
        except (SearchError, OSError, EOFError):
            self.close()
            raise

    @property
    def busy(self) -> int:
        """Workers searching now (approximate while one is being replaced)."""
        return self.count - self._idle.qsize()

    def _start(self) -> _Worker:
        """A new worker, from a new template if the one before has ended."""
        try:
            worker = self._template.fork()
        except (OSError, EOFError):
            log.error("the search template has ended (exit code %s); starting another", self._template.process.poll())
            self._template.close()
            self._template = _Template(self._command)
            worker = self._template.fork()
        self._all.append(worker)
        return worker

    def best_path(self, log_probabilities: np.ndarray, hotwords: Sequence[str] = ()) -> np.ndarray:
        """log_probabilities float [T', classes] -> the best lexicon-constrained CTC path, int64 [T'].
        A long input's pieces (LexiconDecoder.best_path) go to several workers at once. hotwords:
        as LexiconDecoder.best_path, but a word outside the lexicon is a SearchError here."""
        pieces = self.piece_paths(log_probabilities, hotwords)
        return joined_paths(list(pieces), self.blank, self.space)

    def piece_paths(self, log_probabilities: np.ndarray, hotwords: Sequence[str] = ()) -> Iterator[np.ndarray]:
        """log_probabilities float [T', classes] -> the paths of its pieces (pieces_at_pauses) in order,
        each as soon as it and those before it are found; all pieces are searched at once, on as
        many workers as are idle. hotwords: as best_path."""
        if log_probabilities.ndim != 2 or log_probabilities.shape[1] != self.classes:
            raise ValueError(f"expected [frames, {self.classes}] log-probabilities, got {log_probabilities.shape}")
        pieces = pieces_at_pauses(log_probabilities, self.blank, self.space, self.longest)
        if len(pieces) == 1:
            return iter([self._search(log_probabilities, hotwords)])
        return self._pieces.map(self._search, pieces, [hotwords] * len(pieces))

    def _search(self, log_probabilities: np.ndarray, hotwords: Sequence[str]) -> np.ndarray:
        worker = self._idle.get()
        try:
            path = worker.search(log_probabilities, hotwords)
        except (EOFError, OSError, ValueError):  # ValueError: its pipe was closed by close()
            if self._closed:
                raise SearchError("the search workers have been closed (the service is stopping)") from None
            dead = worker
            log.error("search worker %d stopped during a search; starting another", dead.pid)
            dead.close()
            if dead in self._all:
                self._all.remove(dead)
            worker = self._start()  # if this fails, the dead one goes back and the next search tries again
            raise SearchError(f"the search worker stopped during this search (process {dead.pid})") from None
        finally:
            self._idle.put(worker)
        return path

    def close(self) -> None:
        """End every worker (each sees its request pipe close), then the template."""
        self._closed = True
        self._pieces.shutdown(wait=False, cancel_futures=True)
        for worker in self._all:
            worker.close()
        self._all.clear()
        self._template.close()

    def __enter__(self) -> SearchWorkers:
        return self

    def __exit__(self, *exception) -> None:
        self.close()


if __name__ == "__main__":
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # whatever a library prints goes to the log
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the service ends the workers
    orders = socket.socket(fileno=os.dup(sys.stdin.fileno()))
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, sys.stdin.fileno())  # so that only `orders` holds the socket
    os.close(nothing)
    labels, fields = json.loads(sys.argv[1])
    serve_forks(labels, LexiconSettings(**fields), orders)
