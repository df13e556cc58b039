"""Micro-batcher: coalesce concurrent requests into length-grouped model batches, off the event loop.

Profiled under load (py-spy, concurrency 32), the old batcher left the model idle between batches:
its worker was a coroutine, so after each batch the model thread waited for the event loop to come
round (busy parsing HTTP and building responses) before it got the next one, and it tokenised
inside the model thread. Now:

- a request's messages are tokenised in :meth:`MicroBatcher.submit`, on the event loop for small
  requests (a tweet costs tens of µs, less than a thread hop) or in one tokeniser thread for big
  ones, so the model thread only pads and runs ONNX Runtime;
- a dedicated model thread takes its next batch straight from a locked queue the moment the
  previous one is done, and hands results back with ``call_soon_threadsafe``: the event loop
  answers requests while the model computes the next batch. With ``streams`` > 1 there are that
  many model threads on the same queue (and the same ONNX Runtime session, whose ``run`` is
  thread-safe), so batches run side by side: on few cores, several single-threaded runs keep the
  cores busier than one run whose intra-op threads wait for each other between small ops;
- a batch is chosen by a token budget, not a row count: the queued messages (oldest
  ``plan_window`` of them) are sorted by token length and split into contiguous groups that minimise
  the estimated model cost (``overhead_tokens`` per ONNX call + padded tokens), under
  ``max_batch`` rows and ``max_batch_tokens`` padded tokens per call; the group holding the OLDEST
  queued message runs next (no message waits behind a stream of better-fitting ones). A batch of
  similar lengths pads little; a lone long e-mail no longer pads a batch of tweets;
- messages of a request whose client has gone (:meth:`MicroBatcher.cancel`) are dropped before they
  reach the model.

A full queue is refused at once (:class:`Overloaded`) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS
from model.memory import release_free_memory, trim_available
from model.scorer import Predictions, Scorer
from service.api import metrics

Tokenize = Callable[[Sequence[str]], tuple[list[list[int]], list[bool]]]
RunIds = Callable[[Sequence[Sequence[int]], Sequence[bool]], Predictions]
#: requests with more text than this are tokenised in a worker thread, not on the event loop
INLINE_TOKENIZE_CHARS = 4_000
#: estimated fixed cost of one ONNX Runtime call, in padded tokens: what makes one batch of 8 rows
#: cheaper than 8 batches of one (raw ORT: 111 msg/s at batch 1 vs 161 at batch 8, ~40-token texts).
#: 32 for a call on several intra-op threads (one 2-thread stream, 3 interleaved rounds at
#: concurrency 32: 64.9 / 64.5 / 62.1 req/s against 62.9 / 60.0 / 59.9 for 8). A single-thread call
#: has no threads to wake and join, so its fixed cost is lower: with two 1-thread streams (int8
#: student, concurrency 32, 3 rounds) 8 → 191.6 / 197.9 / 203.1 req/s against 186.5 / 187.2 / 188.3
#: for 32 (0: 179.5, 96: 164.6)
OVERHEAD_TOKENS = 32
OVERHEAD_TOKENS_ONE_THREAD = 8


def overhead_tokens(intra_op_threads: int) -> float:
    """The planner's per-call cost for model calls on this many ORT threads (0: ORT's default)."""
    return OVERHEAD_TOKENS_ONE_THREAD if intra_op_threads == 1 else OVERHEAD_TOKENS


class Overloaded(RuntimeError):
    """The queue is full; the caller should retry later."""


@dataclass(eq=False)
class Job:
    """One request's messages on their way through the model."""

    ids: list[list[int]]
    truncated: list[bool]
    future: asyncio.Future[Predictions]
    severity: np.ndarray = field(init=False)
    followup: np.ndarray = field(init=False)
    sentiment: np.ndarray = field(init=False)
    remaining: int = field(init=False)
    queued: int = 0  # messages still in the queue (not yet taken by the model thread)

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.severity = np.zeros((n, len(SEVERITY_LABELS)))
        self.followup = np.zeros(n)
        self.sentiment = np.zeros((n, len(SENTIMENT_LABELS)))
        self.remaining = n


@dataclass(eq=False)
class _Item:
    job: Job
    index: int
    length: int


def plan(lengths: Sequence[int], max_rows: int, max_tokens: int, overhead: float) -> list[tuple[int, int]]:
    """Split ascending ``lengths`` into contiguous ``[start, end)`` groups of least total cost
    (``overhead`` + rows × longest length per group), each within ``max_rows`` rows and, unless it is
    a single row, ``max_tokens`` padded tokens. Exact (dynamic programme over the sorted order)."""
    n = len(lengths)
    cost = np.full(n + 1, np.inf)
    cost[0] = 0.0
    back = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        width = lengths[end - 1]
        rows_cap = max(1, min(max_rows, max_tokens // max(width, 1)))
        lo = max(0, end - rows_cap)
        starts = np.arange(lo, end)
        totals = cost[lo:end] + overhead + (end - starts) * width
        k = int(np.argmin(totals))
        cost[end], back[end] = totals[k], lo + k
    groups: list[tuple[int, int]] = []
    end = n
    while end > 0:
        groups.append((int(back[end]), end))
        end = int(back[end])
    return groups[::-1]


class MicroBatcher:
    """Bounded queue + ``streams`` model threads; ``await submit(texts)`` returns that request's predictions."""

    def __init__(self, tokenize: Tokenize, run: RunIds, *, max_batch: int = 64, max_batch_tokens: int = 4096,
                 max_wait_ms: float = 0.0, max_queue: int = 2048, overhead_tokens: float = OVERHEAD_TOKENS,
                 plan_window: int | None = None, idle_trim_ms: float = 0.0, streams: int = 1) -> None:
        if streams < 1:
            raise ValueError(f"streams must be at least 1, got {streams}")
        self._tokenize, self._run_ids = tokenize, run
        self.streams = streams
        self.max_batch, self.max_batch_tokens, self.max_queue = max_batch, max_batch_tokens, max_queue
        self.max_wait, self.overhead = max_wait_ms / 1000.0, float(overhead_tokens)
        self.plan_window = plan_window or 2 * max_batch
        self._queue: deque[_Item] = deque()
        self._queued = 0  # live messages in the queue (items of cancelled jobs are skipped lazily)
        self._reserved = 0  # admitted messages still being tokenised
        self._cond = threading.Condition()
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._running = 0  # model threads not yet finished
        self._busy = 0  # model threads running a batch now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._tokenizer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ct-tokenize")
        #: after the model has been idle this long following a batch, freed memory goes back to the
        #: OS (model.memory; 0 = never)
        self.idle_trim = idle_trim_ms / 1000.0 if trim_available() else 0.0
        self._dirty = False  # a batch ran since the last trim

    @classmethod
    def for_scorer(cls, scorer: Scorer, **kwargs: Any) -> MicroBatcher:
        """The batcher the service runs: the scorer's tokeniser and its one-batch model call."""
        return cls(scorer.encoder.token_ids, scorer.predict_ids, **kwargs)

    @property
    def queued(self) -> int:
        """Messages waiting for the model."""
        return self._queued

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        self._threads = [threading.Thread(target=self._model_thread, name=f"ct-model-{k}", daemon=True)
                         for k in range(self.streams)]
        self._running = len(self._threads)
        for t in self._threads:
            t.start()

    async def close(self) -> None:
        """Finish everything queued, then stop the model threads."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._stopped is not None:
            await self._stopped
        self._tokenizer.shutdown(wait=False)

    async def submit(self, texts: Sequence[str]) -> Predictions:
        """Tokenise, queue, and wait for the model (:class:`Overloaded` at once when the queue is full)."""
        return await self.wait(await self.enqueue(texts))

    async def enqueue(self, texts: Sequence[str]) -> Job:
        """Tokenise and queue ``texts``; the returned job's future resolves to its predictions."""
        n = len(texts)
        with self._cond:  # admission counts messages still being tokenised, so a burst is refused at once
            self._refuse(n)
            self._reserved += n
        try:
            if sum(len(t) for t in texts) > INLINE_TOKENIZE_CHARS:
                # one tokeniser thread, not anyio's pool of 40: forty threads contending for the GIL
                # starve the event loop under a burst of big requests
                ids, truncated = await asyncio.get_running_loop().run_in_executor(self._tokenizer, self._tokenize,
                                                                                  texts)
            else:
                ids, truncated = self._tokenize(texts)
        finally:
            with self._cond:
                self._reserved -= n
        job = Job(ids, truncated, asyncio.get_running_loop().create_future())
        with self._cond:
            self._queue.extend(_Item(job, i, len(row)) for i, row in enumerate(ids))
            job.queued = len(ids)
            self._queued += len(ids)
            metrics.QUEUE_DEPTH.set(self._queued)
            self._cond.notify()
        return job

    @staticmethod
    async def wait(job: Job) -> Predictions:
        return await job.future

    def cancel(self, job: Job) -> int:
        """Drop a job whose client has gone: its queued messages never reach the model.
        Returns how many messages were dropped."""
        with self._cond:
            dropped, job.queued = job.queued, 0
            self._queued -= dropped
            metrics.QUEUE_DEPTH.set(self._queued)
        if not job.future.done():
            job.future.cancel()
        if dropped:
            metrics.DROPPED.inc(dropped)
        return dropped

    def _refuse(self, n: int) -> None:
        if self._closing:
            raise Overloaded("shutting down")
        waiting = self._queued + self._reserved
        if waiting + n > self.max_queue:
            raise Overloaded(f"queue full ({waiting} messages waiting, limit {self.max_queue})")

    # ------------------------------------------------------------------ model thread
    def _take(self) -> list[_Item] | None:
        """Block until messages are queued; remove and return the next model batch (None: closed and empty)."""
        with self._cond:
            while self._queued == 0:
                if self._closing:
                    return None
                if self._dirty and self.idle_trim > 0 and self._busy == 0:
                    if not self._cond.wait(self.idle_trim) and self._queued == 0 and not self._closing \
                            and self._busy == 0 and self._dirty:
                        self._dirty = False
                        self._cond.release()  # enqueuers are not held up while glibc trims
                        try:
                            release_free_memory()
                            metrics.MEMORY_TRIMS.inc()
                        finally:
                            self._cond.acquire()
                    continue
                self._cond.wait()
            if self.max_wait > 0 and self._queued < self.max_batch and not self._closing:
                deadline = time.monotonic() + self.max_wait
                while self._queued < self.max_batch and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
            window: list[_Item] = []
            for item in self._queue:  # oldest first; items of cancelled jobs are skipped
                if item.job.queued:
                    window.append(item)
                    if len(window) == self.plan_window:
                        break
            order = sorted(range(len(window)), key=lambda i: window[i].length)
            groups = plan([window[i].length for i in order], self.max_batch, self.max_batch_tokens, self.overhead)
            oldest = order.index(0)
            start, end = next(g for g in groups if g[0] <= oldest < g[1])
            batch = [window[i] for i in order[start:end]]
            taken = {id(item) for item in batch}
            self._queue = deque(i for i in self._queue if i.job.queued and id(i) not in taken)
            for item in batch:
                item.job.queued -= 1
            self._queued -= len(batch)
            self._busy += 1
            metrics.QUEUE_DEPTH.set(self._queued)
            return batch

    def _model_thread(self) -> None:
        assert self._loop is not None
        try:
            while (batch := self._take()) is not None:
                t0 = time.perf_counter()
                try:
                    preds = self._run_ids([b.job.ids[b.index] for b in batch],
                                          [b.job.truncated[b.index] for b in batch])
                except Exception as exc:  # a model failure fails these callers, not the thread
                    metrics.ERRORS.labels("model").inc()
                    self._post(self._fail, batch, exc)
                    continue
                finally:
                    with self._cond:
                        self._busy -= 1
                        self._dirty = True
                        if self._busy == 0:
                            self._cond.notify_all()  # a waiting stream now times the idle trim
                metrics.BATCH_SECONDS.observe(time.perf_counter() - t0)
                metrics.BATCH_SIZE.observe(len(batch))
                self._post(self._deliver, batch, preds)
        finally:
            self._post(self._done)

    def _post(self, fn: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the event loop is gone (process exit): nobody waits any more
            self._loop.call_soon_threadsafe(fn, *args)

    def _done(self) -> None:
        self._running -= 1
        if self._running == 0 and self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    @staticmethod
    def _fail(batch: list[_Item], exc: Exception) -> None:
        for item in batch:
            if not item.job.future.done():
                item.job.future.set_exception(exc)

    @staticmethod
    def _deliver(batch: list[_Item], preds: Predictions) -> None:
        for row, item in enumerate(batch):
            job = item.job
            if job.future.done():  # caller went away or an earlier batch failed
                continue
            i = item.index
            job.severity[i], job.followup[i], job.sentiment[i] = preds.severity[row], preds.followup[row], \
                preds.sentiment[row]
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(Predictions(job.severity, job.followup, job.sentiment,
                                                  np.asarray(job.truncated, dtype=bool)))
