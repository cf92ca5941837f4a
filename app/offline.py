"""Audio files -> words on this machine, through the service's own pipeline (`qasr transcribe`):
the same quantization cache, backend, windows, batches and decoder as `qasr serve`, with no server."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from app.audio import AudioError, decode_audio
from app.decoding import Word
from app.model_store import prepare_model
from app.settings import Settings
from app.transcriber import Engine, Window, WindowResult, decode


@dataclass
class FileTranscript:
    words: list[Word]
    duration: float  # seconds of audio


@dataclass
class _Recognised:
    """One file through the model, before its search."""

    windows: list[Window]
    results: list[WindowResult]
    duration: float  # seconds of audio


class OfflineTranscriber:
    """The settings' model, quantized (or taken from the cache) and opened once.

    With more than one search worker (QASR_SEARCH_WORKERS; its default, 0, means one per core and
    then only for several files) the lexicon searches run in worker processes, several files' (and a
    long file's pieces) at once, while this process runs the next files through the model; otherwise
    they run in this process, one after another."""

    def __init__(self, settings: Settings, files: int = 1):
        self.settings = settings
        workers = settings.search_worker_count()  # None: greedy decoding, no searches
        wanted = files > 1 or settings.search_workers > 0  # one file: only if a count was asked for
        self.searches = workers if workers is not None and workers > 1 and wanted else 1
        prepared = prepare_model(settings.model_path, settings.cache_dir, settings.calibration())
        in_workers = self.searches if self.searches > 1 else None
        self.engine = Engine.from_settings(prepared.folder, settings, search_workers=in_workers)

    def _recognise(self, data: bytes) -> _Recognised:
        """An audio file's bytes -> its windows' frame scores; AudioError for what cannot be read."""
        s = self.settings
        audio = decode_audio(data, self.engine.sample_rate, s.max_audio_seconds)
        windows, samples = self.engine.windows_of(audio.samples, s.chunk_seconds, s.chunk_overlap_seconds)
        results = []
        for first in range(0, len(samples), s.max_batch_size):
            results += self.engine.run(samples[first : first + s.max_batch_size])
        return _Recognised(windows, results, audio.seconds)

    def _words(self, recognised: _Recognised, hotwords: tuple[str, ...]) -> FileTranscript:
        words, _ = decode(self.engine, recognised.windows, recognised.results, hotwords)
        return FileTranscript(words, recognised.duration)

    def transcripts(
        self, paths: Iterable[Path], read: Callable[[Path], bytes], hotwords: tuple[str, ...] = ()
    ) -> Iterator[tuple[Path, FileTranscript | OSError | AudioError]]:
        """Each path with its transcript, or the error that stopped it, in the order given. read(path)
        gives a file's bytes. Up to `searches` files are searched at once, beside the model's run of
        the next one."""
        pending: deque[tuple[Path, Future[FileTranscript]]] = deque()
        with ThreadPoolExecutor(self.searches, thread_name_prefix="file-search") as pool:
            for path in paths:
                try:
                    recognised = self._recognise(read(path))
                except (OSError, AudioError) as error:
                    failed: Future[FileTranscript] = Future()
                    failed.set_exception(error)
                    pending.append((path, failed))
                else:
                    pending.append((path, pool.submit(self._words, recognised, hotwords)))
                while pending and (pending[0][1].done() or len(pending) > self.searches):
                    yield _outcome(*pending.popleft())
            while pending:
                yield _outcome(*pending.popleft())

    def close(self) -> None:
        self.engine.close()


def _outcome(path: Path, search: Future[FileTranscript]) -> tuple[Path, FileTranscript | OSError | AudioError]:
    try:
        return path, search.result()
    except (OSError, AudioError) as error:
        return path, error
