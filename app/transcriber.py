"""Audio -> words: windows for long audio, dynamic batches through ONNX Runtime, CTC decoding."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.decoding import Word, path_probabilities, path_words
from app.hotwords import HotwordLexicon
from app.settings import Settings
from app.shapes import PAD_SHAPES, ShapeBuckets
from quantizer.ctc import frame_log_probabilities
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.integer_model import IntegerModel
from quantizer.lexicon import (
    PAUSE_FRAMES,
    LexiconDecoder,
    LexiconSettings,
    early_pause_cuts,
    settled_pause_cuts,
)
from quantizer.lexicon_workers import SearchWorkers
from quantizer.runtime import Recognizer, logit_scale, same_logits

log = logging.getLogger("qasr.transcriber")


@dataclass
class WindowResult:
    log_probabilities: np.ndarray  # float32 [T', classes]
    batch_id: int
    batch_size: int
    features_s: float  # seconds the whole batch spent in the front end
    inference_s: float  # seconds the whole batch spent in ONNX Runtime


@dataclass
class Timings:
    features: float = 0.0
    inference: float = 0.0
    ctc: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)


class Engine:
    """A quantized model folder's front end and one backend's ONNX Runtime session."""

    def __init__(
        self,
        model_dir: Path,
        backend: str,
        device: str,
        threads: int,
        window_seconds: float = 20.0,
        max_batch: int = 8,
        pad_shapes: str = "auto",
        lexicon: LexiconSettings | None = None,
        search_workers: int | None = None,
    ):
        """window_seconds, max_batch: the longest window and largest batch `run` will get.
        pad_shapes: pad batches to a few shapes, each run once here (see app.shapes); `auto` does
        so on GPU providers only, where every new shape costs seconds.
        lexicon: decode by lexicon beam search with these settings instead of greedily.
        search_workers: run those searches in this many worker processes (None: in this one)."""
        if pad_shapes not in PAD_SHAPES:
            raise ValueError(f"pad_shapes={pad_shapes!r}: choose one of {', '.join(PAD_SHAPES)}")
        model = IntegerModel.load(model_dir)
        if model.filterbank is None or model.window is None:
            raise ValueError(f"{model_dir}: the checkpoint stored no mel filterbank/window")
        self.labels = model.labels
        self.lexicon: LexiconDecoder | SearchWorkers | None = None
        self.lexicon_settings = lexicon
        self.hotword_lexicon: HotwordLexicon | None = None  # None: greedy decoding, which takes no hotwords
        if lexicon is not None:
            self.hotword_lexicon = HotwordLexicon(model.labels, lexicon)
            self.lexicon = (
                LexiconDecoder(model.labels, lexicon)
                if search_workers is None
                else SearchWorkers(model.labels, lexicon, search_workers)
            )
        self.front_end = LogMelFrontEnd.of(model)
        self.recognizer = Recognizer(model_dir, backend, device, threads, memory_arena=False)
        if backend == "integer-float":  # exact where the float kernels add exactly: checked here
            strict = Recognizer(model_dir, "integer", device, threads, memory_arena=False)
            if not same_logits(self.recognizer, strict, model.feat_in):
                log.warning(
                    "integer-float's logits differ from the strict integer graph's on this machine (its "
                    "float kernels do not sum exactly here): serving the strict integer graph instead"
                )
                self.recognizer = strict
        self.backend = self.recognizer.backend  # the one serving: integer-float only where checked exact
        self.logit_scale = logit_scale(model, self.backend)
        self.sample_rate = self.front_end.sample_rate
        self.buckets: ShapeBuckets | None = None
        self.warmup_s = 0.0
        if pad_shapes == "on" or (pad_shapes == "auto" and self.recognizer.provider != "CPUExecutionProvider"):
            self.buckets = self._warm_up_buckets(int(window_seconds * self.sample_rate), max_batch)
        self.frame_samples = self._measure_stride() * self.front_end.hop  # audio samples per output frame

    @classmethod
    def from_settings(cls, model_dir: Path, settings: Settings, search_workers: int | None) -> Engine:
        """The engine the service's settings describe, on a quantized model folder."""
        return cls(
            model_dir,
            settings.backend,
            settings.device,
            settings.threads,
            window_seconds=settings.chunk_seconds,
            max_batch=settings.max_batch_size,
            pad_shapes=settings.pad_shapes,
            lexicon=settings.lexicon(),
            search_workers=search_workers,
        )

    def close(self) -> None:
        """Stop the search workers, if any."""
        if isinstance(self.lexicon, SearchWorkers):
            self.lexicon.close()

    def _measure_stride(self) -> int:
        """Feature frames per output frame, from one run on 4 s of noise (in a warmed bucket when padding)."""
        noise = np.random.default_rng(0).standard_normal((1, 4 * self.sample_rate)).astype(np.float32) * 0.01
        features, frames = self.front_end(noise, np.array([noise.shape[1]]))
        if self.buckets is not None:
            features, frames = self.buckets.pad(features, frames)
        result = self.recognizer(features, frames)
        return int(round(frames[0] / result.lengths[0]))

    def _warm_up_buckets(self, window_samples: int, max_batch: int) -> ShapeBuckets:
        """Buckets up to the front end's frames for the longest window, each run once."""
        silence = np.zeros((1, window_samples), np.float32)
        features, _ = self.front_end(silence, np.array([window_samples]))
        buckets = ShapeBuckets(features.shape[2], max_batch)
        start = time.perf_counter()
        for rows, frames in buckets.shapes():
            self.recognizer(np.zeros((rows, self.front_end.bins, frames), np.float32), np.full(rows, frames))
        self.warmup_s = time.perf_counter() - start
        return buckets

    def windows_of(
        self, samples: np.ndarray, window_seconds: float, overlap_seconds: float
    ) -> tuple[list[Window], list[np.ndarray]]:
        """Mono samples at sample_rate -> the windows that cover them (plan_windows) and each one's samples."""
        rate = self.sample_rate
        windows = plan_windows(
            len(samples), int(window_seconds * rate), int(overlap_seconds * rate), self.frame_samples
        )
        return windows, [samples[w.start : w.stop] for w in windows]

    def run(self, windows: list[np.ndarray], batch_id: int = 0) -> list[WindowResult]:
        """float32 sample windows (any lengths) -> per-window frame scores, as one padded batch."""
        start = time.perf_counter()
        features, frames = self.front_end(*pad_audio(windows))
        if self.buckets is not None:
            features, frames = self.buckets.pad(features, frames)
        features_s = time.perf_counter() - start
        start = time.perf_counter()
        result = self.recognizer(features, frames, with_logits=True)
        inference_s = time.perf_counter() - start
        results = []
        for b in range(len(windows)):
            valid = int(result.lengths[b])
            log_probabilities = frame_log_probabilities(result.logits[b, :, :valid], self.logit_scale)
            results.append(WindowResult(log_probabilities, batch_id, len(windows), features_s, inference_s))
        return results

    def hotwords(self, fields: list[str]) -> tuple[str, ...]:
        """`hotwords` fields -> the words searches are to favour, the settings' own first
        (HotwordLexicon.checked); ValueError for fields when decoding greedily."""
        if self.hotword_lexicon is None:
            if fields:
                raise ValueError(
                    "hotwords need the lexicon decoder (QASR_DECODER=lexicon); this model is decoded greedily"
                )
            return ()
        return self.hotword_lexicon.checked(fields)

    @property
    def piece_frames(self) -> int | None:
        """The longest piece the lexicon search takes at once; None for greedy decoding (no pieces)."""
        return None if self.lexicon is None else self.lexicon_settings.max_frames

    def path_pieces(self, log_probabilities: np.ndarray, hotwords: tuple[str, ...] = ()) -> Iterator[np.ndarray]:
        """[T', classes] -> consecutive pieces of its CTC path, each when found: the lexicon beam
        search's pieces (cut at pauses, each ending its last word; hotwords: lexicon words it
        favours, checked by hotword_lexicon), or the whole argmax path."""
        if self.lexicon is not None:
            return self.lexicon.piece_paths(log_probabilities, hotwords)
        return iter([log_probabilities.argmax(axis=1)])


@dataclass(frozen=True)
class Window:
    start: int  # first sample
    stop: int  # one past the last sample
    keep_from: int  # first output frame of this window that counts
    keep_to: int  # one past the last output frame that counts


class WindowPlanner:
    """Windows for audio that is still arriving, each given once all its samples are in: each keeps
    the frames of `keep` samples, seen with `left` samples before them and `right` after (the first
    window has nothing before, and keeps those frames too; the last ends with the audio). Lengths in
    samples, whole frames of `frame` samples each."""

    def __init__(self, left: int, keep: int, right: int, frame: int):
        self.left, self.keep, self.right = (length // frame * frame for length in (left, keep, right))
        if self.keep <= 0:
            raise ValueError(f"windows must keep at least one frame of {frame} samples, got {keep}")
        self.frame = frame
        self.start = 0  # first sample of the next window

    def ready(self, received: int) -> list[Window]:
        """The windows, not given before, that `rest` gives for every total past `received` samples."""
        windows, length = [], self.left + self.keep + self.right
        while received > self.start + length:
            keep_from = 0 if self.start == 0 else self.left // self.frame
            windows.append(Window(self.start, self.start + length, keep_from, (self.left + self.keep) // self.frame))
            self.start += self.keep
        return windows

    def rest(self, total: int) -> list[Window]:
        """The audio ended after `total` samples: the windows still to come, the last one ending there."""
        windows = self.ready(total)
        keep_from = 0 if self.start == 0 else self.left // self.frame
        windows.append(Window(self.start, total, keep_from, -(-(total - self.start) // self.frame)))
        return windows


def plan_windows(total: int, window: int, overlap: int, frame: int) -> list[Window]:
    """Cover `total` samples with windows of at most `window` samples that overlap by `overlap`
    on each side; each output frame is kept from exactly one window, the one where it has the
    most context. All lengths are in samples; `frame` is the samples per output frame."""
    window, overlap = window // frame * frame, overlap // frame * frame
    return WindowPlanner(overlap, window - 2 * overlap, overlap, frame).rest(total)


def kept_frames(window: Window, result: WindowResult) -> np.ndarray:
    """The frames of a window's result that count for the input [keep_to - keep_from, classes]."""
    return result.log_probabilities[window.keep_from : window.keep_to]


def stitch(windows: list[Window], results: list[WindowResult]) -> np.ndarray:
    """Concatenate the kept frames of each window -> log-probabilities [T', classes]."""
    return np.concatenate([kept_frames(w, r) for w, r in zip(windows, results, strict=True)])


def batch_timings(results: list[WindowResult]) -> Timings:
    """The front end's and the model's time for the batches these windows went through."""
    timings = Timings()
    for result in {r.batch_id: r for r in results}.values():
        timings.features += result.features_s
        timings.inference += result.inference_s
        timings.batch_sizes.append(result.batch_size)
    return timings


def words_by_piece(
    engine: Engine, log_probabilities: np.ndarray, first_frame: int = 0, hotwords: tuple[str, ...] = ()
) -> Iterator[list[Word]]:
    """Frames [T', classes] (from output frame `first_frame` of the input) -> the words of each
    piece of their path (Engine.path_pieces), piece by piece as the decoder finds them."""
    frame_seconds = engine.frame_samples / engine.sample_rate
    for path in engine.path_pieces(log_probabilities, hotwords):
        span = log_probabilities[: len(path)]
        yield path_words(path, path_probabilities(span, path), engine.labels, frame_seconds, first_frame)
        log_probabilities, first_frame = log_probabilities[len(path) :], first_frame + len(path)


@dataclass
class Piece:
    """A piece of the input's frames and the words the decoder found in it."""

    words: list[Word]
    first_frame: int  # output frame of the input where it begins
    frames: int  # its length in output frames


def searched_piece(
    engine: Engine, log_probabilities: np.ndarray, first_frame: int, hotwords: tuple[str, ...] = ()
) -> Piece:
    """Frames [T', classes] from output frame `first_frame` -> that piece with its words (words_by_piece)."""
    pieces = words_by_piece(engine, log_probabilities, first_frame, hotwords)
    return Piece([word for words in pieces for word in words], first_frame, len(log_probabilities))


def head_windows(engine: Engine, windows: list[Window]) -> int:
    """How many of these windows' frames settle a PieceStream's first cut (one for greedy decoding)."""
    if engine.piece_frames is None:
        return 1
    needed = engine.piece_frames + PAUSE_FRAMES + 1  # frames known when the first cut settles
    kept = np.cumsum([window.keep_to - window.keep_from for window in windows])
    return min(int(np.searchsorted(kept, needed)) + 1, len(windows))


class PieceStream:
    """Window results, in order -> the words of each piece of the stitched frames, in order, with
    the words, times and confidences of `decode` on the whole input. With the lexicon search a piece
    is searched as soon as its cut is settled (settled_pause_cuts), while later windows are still
    being recognised. Greedy decoding cuts each window's frames at their last space: every word
    before it is complete, and each frame's class is its own argmax, so no later frame changes it."""

    def __init__(
        self,
        engine: Engine,
        hotwords: tuple[str, ...] = (),
        longest: int | None = None,
        pause_probability: float | None = None,
    ):
        """longest: the longest piece in output frames for the lexicon search (default: its own
        max_frames, which `decode` cuts at too). pause_probability: cut at the first pause this sure
        (early_pause_cuts), for a live stream's latency, instead of where `decode` would. Greedy
        decoding ignores both."""
        self.engine, self.hotwords = engine, hotwords
        self.longest = engine.piece_frames if longest is None or engine.piece_frames is None else longest
        self.pause_certainty = None if pause_probability is None else float(np.log(pause_probability))
        self.tail = np.zeros((0, len(engine.labels) + 1), np.float32)  # frames not yet searched [T'', classes]
        self.tail_start = 0  # the output frame tail[0] is
        self.searches: deque[asyncio.Task[Piece]] = deque()  # in the input's order

    def add(self, window: Window, result: WindowResult) -> None:
        """The next window and its result; starts the searches of the pieces it settles. Call on the event loop."""
        self.tail = np.concatenate([self.tail, kept_frames(window, result)])
        labels = self.engine.labels
        if self.longest is not None and self.pause_certainty is not None:
            cuts = early_pause_cuts(self.tail, len(labels), labels.index(" "), self.longest, self.pause_certainty)
        elif self.longest is not None:
            cuts = settled_pause_cuts(self.tail, len(labels), labels.index(" "), self.longest)
        elif " " in labels:
            cuts = np.flatnonzero(self.tail.argmax(axis=1) == labels.index(" "))[-1:].tolist()  # the last space
        else:
            cuts = []  # words cannot be told apart before the end
        done = 0
        for cut in cuts:
            if cut > done:
                self._search(self.tail[done:cut], self.tail_start + done)
                done = cut
        self.tail, self.tail_start = self.tail[done:], self.tail_start + done

    def finish(self) -> None:
        """No more windows: search what is left."""
        self._search(self.tail, self.tail_start)
        self.tail = self.tail[len(self.tail) :]

    async def next_piece(self) -> Piece | None:
        """The next piece once its search is done; None when every piece has been given."""
        return await self.searches.popleft() if self.searches else None

    def abandon(self) -> None:
        """Stop waiting for the pieces not yet given: a stream that ended early (an error, a client
        gone). Their searches run to their end in their threads; the results are dropped."""
        for search in self.searches:
            search.cancel()
        self.searches.clear()

    def ready(self) -> bool:
        """Whether the next piece is there without waiting."""
        return bool(self.searches) and self.searches[0].done()

    def _search(self, log_probabilities: np.ndarray, first_frame: int) -> None:
        search = asyncio.to_thread(searched_piece, self.engine, log_probabilities, first_frame, self.hotwords)
        self.searches.append(asyncio.ensure_future(search))


def decode(
    engine: Engine, windows: list[Window], results: list[WindowResult], hotwords: tuple[str, ...] = ()
) -> tuple[list[Word], Timings]:
    """Stitched windows -> words (CPU-bound for lexicon decoding: call it off the event loop)."""
    timings = batch_timings(results)
    start = time.perf_counter()
    pieces = words_by_piece(engine, stitch(windows, results), hotwords=hotwords)
    words = [word for piece in pieces for word in piece]
    timings.ctc = time.perf_counter() - start
    return words, timings
