"""The micro-batcher on its own, with the tiny bundle's real model: a full queue is refused at once and
it recovers; results equal ``Scorer.predict``; batches follow the token budget and group by length;
the oldest message always runs next; a cancelled job never reaches the model."""

from __future__ import annotations

import asyncio
import threading
from typing import Sequence

import numpy as np
import pytest

from model.scorer import Predictions, Scorer
from service.api.batcher import MicroBatcher, Overloaded, plan


class Recorder:
    """The scorer's real one-batch call, recording the token lengths of every batch it ran."""

    def __init__(self, scorer: Scorer, gate: threading.Event | None = None) -> None:
        self.scorer, self.gate, self.batches = scorer, gate, []  # type: ignore[var-annotated]

    def __call__(self, ids: Sequence[Sequence[int]], truncated: Sequence[bool]) -> Predictions:
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append([len(r) for r in ids])
        return self.scorer.predict_ids(ids, truncated)


@pytest.mark.anyio
async def test_full_queue_is_refused_at_once(scorer: Scorer) -> None:
    batcher = MicroBatcher.for_scorer(scorer, max_batch=1, max_queue=16)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(["wait " * 50] * 16))
    await asyncio.sleep(0)  # let the first request enqueue
    t0 = asyncio.get_running_loop().time()
    with pytest.raises(Overloaded, match="queue full"):
        await batcher.submit(["x"] * 2)
    assert asyncio.get_running_loop().time() - t0 < 0.05  # refused at once, not after waiting
    assert len((await first).followup) == 16
    assert len((await batcher.submit(["ok"])).followup) == 1  # recovered
    await batcher.close()


@pytest.mark.anyio
async def test_results_match_predict_and_batches_respect_the_token_budget(scorer: Scorer,
                                                                          sample_texts: list[str]) -> None:
    gate = threading.Event()
    rec = Recorder(scorer, gate)
    batcher = MicroBatcher(scorer.encoder.token_ids, rec, max_batch=4, max_batch_tokens=160, max_queue=256)
    batcher.start()
    texts = [t * (1 + i % 3) for i, t in enumerate(sample_texts * 4)]
    jobs = [asyncio.ensure_future(batcher.submit(texts[i:i + 3])) for i in range(0, len(texts), 3)]
    await asyncio.sleep(0.05)
    gate.set()  # everything is queued: the model thread now plans over all of it
    got = await asyncio.gather(*jobs)
    await batcher.close()
    want = scorer.predict(texts)
    np.testing.assert_allclose(np.concatenate([g.severity for g in got]), want.severity, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([g.followup for g in got]), want.followup, atol=1e-5)
    assert np.concatenate([g.truncated for g in got]).tolist() == want.truncated.tolist()
    assert sum(len(b) for b in rec.batches) == len(texts)
    for b in rec.batches:
        assert len(b) <= 4 and (len(b) == 1 or len(b) * max(b) <= 160), b
        assert b == sorted(b)  # grouped by length


@pytest.mark.anyio
async def test_model_streams_run_batches_side_by_side(scorer: Scorer, sample_texts: list[str]) -> None:
    side_by_side = threading.Barrier(2, timeout=10)  # one stream alone would wait here and fail its batch
    calls, threads = [0], set()

    def run(ids: Sequence[Sequence[int]], truncated: Sequence[bool]) -> Predictions:
        threads.add(threading.current_thread().name)
        calls[0] += 1
        if calls[0] <= 2:
            side_by_side.wait()
        return scorer.predict_ids(ids, truncated)

    with pytest.raises(ValueError, match="streams"):
        MicroBatcher(scorer.encoder.token_ids, run, streams=0)
    batcher = MicroBatcher(scorer.encoder.token_ids, run, max_batch=2, max_queue=256, streams=2)
    batcher.start()
    texts = sample_texts * 3
    got = await asyncio.gather(*(batcher.submit([t]) for t in texts))
    await batcher.close()  # returns only once both model threads have finished
    assert len(threads) == 2 and not side_by_side.broken
    want = scorer.predict(texts)
    np.testing.assert_allclose(np.concatenate([g.severity for g in got]), want.severity, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([g.sentiment for g in got]), want.sentiment, atol=1e-5)
    with pytest.raises(Overloaded, match="shutting down"):
        await batcher.submit(["after close"])


def test_plan_is_the_cheapest_contiguous_split() -> None:
    lengths = [10, 11, 12, 60, 61, 62, 62, 120]
    groups = plan(lengths, max_rows=4, max_tokens=10_000, overhead=32)
    assert groups == [(0, 3), (3, 7), (7, 8)]  # tweets together, mid-length together, the long one alone
    assert plan(lengths, max_rows=8, max_tokens=10_000, overhead=10_000) == [(0, 8)]  # calls cost a lot: one
    free_calls = plan(lengths, max_rows=8, max_tokens=10_000, overhead=0)  # then only padding costs: none
    assert all(len(set(lengths[s:e])) == 1 for s, e in free_calls) and (5, 7) in free_calls
    assert all((e - s) * lengths[e - 1] <= 130 or e - s == 1 for s, e in plan(lengths, 8, 130, 32))
    assert plan([], 4, 100, 1) == []


@pytest.mark.anyio
async def test_oldest_message_runs_next_and_cancelled_jobs_never_reach_the_model(scorer: Scorer) -> None:
    gate = threading.Event()
    rec = Recorder(scorer, gate)
    batcher = MicroBatcher(scorer.encoder.token_ids, rec, max_batch=2, max_queue=64)
    batcher.start()
    blocker = asyncio.ensure_future(batcher.submit(["first"]))  # taken by the model thread, held at the gate
    await asyncio.sleep(0.05)
    long_job = await batcher.enqueue(["a much longer message that waited first " * 3])
    short = [await batcher.enqueue([f"hi {i}"]) for i in range(6)]
    gone = await batcher.enqueue(["nobody waits for this one " * 4] * 5)
    assert batcher.queued == 12
    assert batcher.cancel(gone) == 5 and batcher.queued == 7
    gate.set()
    await blocker
    await asyncio.gather(batcher.wait(long_job), *(batcher.wait(j) for j in short))
    await batcher.close()
    long_len = len(long_job.ids[0])
    assert long_len in rec.batches[1]  # the oldest queued message went first, not after the short ones
    assert sum(len(b) for b in rec.batches) == 1 + 1 + 6  # the cancelled job's 5 messages never ran
    assert gone.future.cancelled()


def test_server_drops_the_messages_of_a_client_that_disconnected(tiny_bundle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A real server: a client queued behind a big request hangs up; its message never reaches the model."""
    import json
    import re
    import socket
    import threading as th
    import time

    import httpx

    from tools.server import ServerProcess

    # one single-thread stream, one message per batch: the 256 queued messages keep the model busy long
    # enough for the second client to queue and hang up behind them
    env = {"CT_MAX_BATCH": "1", "CT_ORT_THREADS": "1", "CT_MODEL_STREAMS": "1", "CT_MAX_MESSAGES": "256",
           "CT_MAX_QUEUE": "512"}
    big = {"messages": [{"text": f"my parcel never arrived, order {i} " * 8} for i in range(256)]}
    with ServerProcess(tiny_bundle, log_dir=tmp_path, env=env) as srv:
        def metric(name: str) -> float:
            m = re.search(rf"^{name} (\S+)$", httpx.get(f"{srv.url}/metrics").text, re.M)
            return float(m.group(1)) if m else 0.0

        done: list[int] = []
        sender = th.Thread(target=lambda: done.append(httpx.post(srv.score_url, json=big, timeout=60).status_code))
        sender.start()
        deadline = time.monotonic() + 10
        while metric("ct_queue_depth") < 100 and time.monotonic() < deadline:
            time.sleep(0.005)
        body = json.dumps({"messages": [{"text": "nobody will read this answer"}]}).encode()
        with socket.create_connection((srv.url.split("//")[1].split(":")[0], srv.port)) as s:
            s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            time.sleep(0.05)  # let the server read and queue it, then hang up
        sender.join(60)
        assert done == [200]
        assert metric("ct_messages_dropped_total") == 1.0
        assert metric('ct_errors_total{kind="client_gone"}') == 1.0
        assert metric("ct_messages_scored_total") == 256.0  # only the big request was answered


@pytest.mark.anyio
async def test_freed_memory_goes_back_once_the_model_is_idle(scorer: Scorer) -> None:
    """malloc_trim runs once per idle spell after a batch (never while requests keep coming, never
    when idle_trim_ms is 0), and scoring goes on normally afterwards."""
    from model.memory import trim_available
    from service.api import metrics

    if not trim_available():
        pytest.skip("not glibc")

    def trims() -> float:
        return metrics.MEMORY_TRIMS._value.get()

    batcher = MicroBatcher.for_scorer(scorer, idle_trim_ms=50)
    batcher.start()
    before = trims()
    for _ in range(5):  # back to back: the model is never idle for 50 ms
        await batcher.submit(["my parcel is late again"])
    assert trims() == before
    await asyncio.sleep(0.3)
    assert trims() == before + 1  # once, not once per 50 ms of idling
    await asyncio.sleep(0.2)
    assert trims() == before + 1
    assert len((await batcher.submit(["still works"])).followup) == 1
    await asyncio.sleep(0.3)
    assert trims() == before + 2
    await batcher.close()
    off = MicroBatcher.for_scorer(scorer, idle_trim_ms=0)
    off.start()
    await off.submit(["hello"])
    await asyncio.sleep(0.2)
    assert trims() == before + 2
    await off.close()
