"""Dynamic batching: windows from concurrent requests share ONNX Runtime runs.

Requests put windows on one queue; a single worker takes up to `max_batch` of them, waiting at
most `max_wait_s` for the batch to fill (not at all when no other request is in progress), and
runs it in a thread, off the event loop. Long audio
is many windows, so a short request queued behind it joins the next batch instead of waiting for
the whole long file.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from app.transcriber import WindowResult

log = logging.getLogger("qasr.batcher")


@dataclass
class _Item:
    samples: np.ndarray
    future: asyncio.Future
    request: int  # which recognise() call it belongs to


class Batcher:
    def __init__(
        self,
        run: Callable[[list[np.ndarray], int], list[WindowResult]],
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int, int], None] = lambda size, queued: None,
    ):
        """run(windows, batch_id) -> results, called in a worker thread; on_batch(size, still_queued)."""
        self._run, self._max_batch, self._max_wait_s, self._on_batch = run, max_batch, max_wait_s, on_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._batch_ids = itertools.count()
        self._request_ids = itertools.count()
        self._active: set[int] = set()  # recognise() calls waiting for results

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def recognise(self, windows: list[np.ndarray]) -> list[WindowResult]:
        """Frame scores for each window, in order; raises what the run raised for its batch."""
        return [result async for result in self.results_in_order(windows)]

    async def results_in_order(self, windows: list[np.ndarray], head: int | None = None) -> AsyncIterator[WindowResult]:
        """Frame scores for each window, in order, each as soon as it and those before it are done.
        head: queue only the first `head` windows until their results are in, so that they make a
        small first batch (a stream's first words); otherwise all at once, as recognise does."""
        loop = asyncio.get_running_loop()
        request = next(self._request_ids)
        items = [_Item(w, loop.create_future(), request) for w in windows]
        head = len(items) if head is None else head
        self._active.add(request)
        for item in items[:head]:
            self._queue.put_nowait(item)
        try:
            for index, item in enumerate(items):
                if index == head:
                    for later in items[head:]:
                        self._queue.put_nowait(later)
                yield await item.future
        finally:
            self._active.discard(request)
            for item in items:  # a cancelled request leaves nothing for the worker to compute
                item.future.cancel()

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + self._max_wait_s
            while len(batch) < self._max_batch:
                if self._queue.empty() and self._active <= {item.request for item in batch}:
                    break  # no other request could add a window: waiting would only add latency
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    batch.append(
                        self._queue.get_nowait()
                        if remaining <= 0
                        else await asyncio.wait_for(self._queue.get(), remaining)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            batch = [item for item in batch if not item.future.done()]
            if not batch:
                continue
            self._on_batch(len(batch), self._queue.qsize())
            try:
                results = await asyncio.to_thread(self._run, [item.samples for item in batch], next(self._batch_ids))
            except Exception as error:  # one failing batch fails its requests, not the worker
                log.exception("inference failed for a batch of %d windows", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
