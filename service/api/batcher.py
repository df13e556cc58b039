"""Micro-batcher: coalesce concurrent requests into model batches, off the event loop.

Each request's messages join one bounded FIFO. A single worker task takes up to ``max_batch``
messages (waiting at most ``max_wait_ms`` for more when the batch is not full), runs the model in
a dedicated thread, and hands each caller its own rows. While a batch runs, new arrivals queue
up, so batches grow with load without adding latency at low load. A full queue is refused at
once (:class:`Overloaded`) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from model.scorer import Predictions
from service.api import metrics


class Overloaded(RuntimeError):
    """The queue is full; the caller should retry later."""


@dataclass
class _Job:
    texts: Sequence[str]
    future: asyncio.Future[Predictions]
    parts: dict[int, Predictions] = field(default_factory=dict)
    remaining: int = 0


@dataclass
class _Item:
    job: _Job
    index: int


class MicroBatcher:
    """Bounded queue + one worker; ``await submit(texts)`` returns that request's predictions."""

    def __init__(self, predict: Callable[[Sequence[str]], Predictions], *, max_batch: int = 64,
                 max_wait_ms: float = 0.0, max_queue: int = 2048) -> None:
        self._predict = predict
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self._queue: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ct-model")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ct-batcher")

    async def close(self) -> None:
        """Finish everything queued, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, texts: Sequence[str]) -> Predictions:
        if self._closing:
            raise Overloaded("shutting down")
        if len(self._queue) + len(texts) > self.max_queue:
            raise Overloaded(f"queue full ({len(self._queue)} messages waiting, limit {self.max_queue})")
        job = _Job(texts, asyncio.get_running_loop().create_future(), remaining=len(texts))
        self._queue.extend(_Item(job, i) for i in range(len(texts)))
        metrics.QUEUE_DEPTH.set(len(self._queue))
        self._wakeup.set()
        return await job.future

    async def _next_batch(self) -> list[_Item]:
        while not self._queue:
            if self._closing:
                return []
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.max_wait > 0 and len(self._queue) < self.max_batch:
            deadline = time.monotonic() + self.max_wait
            while len(self._queue) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except TimeoutError:
                    break
        n = min(self.max_batch, len(self._queue))
        batch = [self._queue.popleft() for _ in range(n)]
        metrics.QUEUE_DEPTH.set(len(self._queue))
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while batch := await self._next_batch():
            texts = [item.job.texts[item.index] for item in batch]
            t0 = time.perf_counter()
            try:
                preds = await loop.run_in_executor(self._executor, self._predict, texts)
            except Exception as exc:  # a model failure fails these callers, not the worker
                metrics.ERRORS.labels("model").inc()
                for item in batch:
                    if not item.job.future.done():
                        item.job.future.set_exception(exc)
                continue
            metrics.BATCH_SECONDS.observe(time.perf_counter() - t0)
            metrics.BATCH_SIZE.observe(len(batch))
            self._deliver(batch, preds)

    @staticmethod
    def _deliver(batch: list[_Item], preds: Predictions) -> None:
        for row, item in enumerate(batch):
            job = item.job
            if job.future.done():  # caller went away or an earlier batch failed
                continue
            job.parts[item.index] = Predictions(preds.severity[row], preds.followup[row],
                                                preds.sentiment[row], preds.truncated[row])
            job.remaining -= 1
            if job.remaining == 0:
                order = range(len(job.texts))
                job.future.set_result(Predictions(
                    np.stack([job.parts[i].severity for i in order]),
                    np.array([job.parts[i].followup for i in order]),
                    np.stack([job.parts[i].sentiment for i in order]),
                    np.array([job.parts[i].truncated for i in order], dtype=bool)))
