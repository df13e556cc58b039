"""The micro-batcher on its own: a full queue is refused at once, and it recovers."""

from __future__ import annotations

import asyncio

import pytest

from model.scorer import Scorer
from service.api.batcher import MicroBatcher, Overloaded


@pytest.mark.anyio
async def test_full_queue_is_refused_at_once(scorer: Scorer) -> None:
    batcher = MicroBatcher(scorer.predict, max_batch=1, max_queue=16)
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
