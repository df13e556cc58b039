"""Closed-loop HTTP load generator, run as its own process by the benchmark.

``python -m tools.bench_load --url URL --texts FILE --concurrency N --duration S --warmup W``

N asyncio workers share one httpx client (keep-alive, one connection each); every worker sends
one message per request, waits for the answer, and sends the next. After ``W`` seconds of
warm-up, requests that complete during the next ``S`` seconds are counted. Prints one JSON
object: throughput, latency percentiles, errors, and the CPU used by this process and by the
server (``--server-pid``) during the measured window. An API key from ``CT_API_KEYS`` /
``CT_API_KEYS_FILE`` is sent when set. httpx is imported only when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from service.api.settings import load_api_keys


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of ``values`` (NaN when empty)."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class _Tally:
    """What the workers record during the measured window."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)


def _server_cpu(pid: int | None) -> float:
    """User + system CPU seconds of the server process (all its threads), 0 when unknown."""
    if not pid:
        return 0.0
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except Exception:  # the process may be gone, or psutil missing: CPU figures are optional
        return 0.0


def system_busy_seconds() -> float:
    """CPU seconds all processes on the machine have spent busy (0 without psutil)."""
    try:
        import psutil

        t = psutil.cpu_times()
        return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))
    except Exception:  # optional figure
        return 0.0


def _payloads(texts: Sequence[str], seed: int) -> list[bytes]:
    """Pre-encoded request bodies (one message each), in a seeded order, so the client spends
    its CPU on HTTP rather than on JSON encoding."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [json.dumps({"messages": [{"id": f"load-{i}", "text": texts[i]}]}, ensure_ascii=False).encode()
            for i in order]


async def drive(url: str, texts: Sequence[str], concurrency: int, duration: float, warmup: float,
                server_pid: int | None = None, api_key: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Run the closed loop and summarise the measured window."""
    import httpx

    payloads = _payloads(texts, seed)
    headers = {"content-type": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    tally = _Tally()
    start = time.perf_counter()
    w_start, w_end = start + warmup, start + warmup + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def mark(at: float, name: str) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        tally.cpu[f"client_{name}"] = time.process_time()
        tally.cpu[f"server_{name}"] = _server_cpu(server_pid)
        tally.cpu[f"system_{name}"] = system_busy_seconds()

    async def worker(client: httpx.AsyncClient, k: int) -> None:
        i = k * max(1, len(payloads) // concurrency)
        while (t0 := time.perf_counter()) < w_end:
            try:
                resp = await client.post(url, content=payloads[i % len(payloads)], headers=headers)
                kind = None if resp.status_code == 200 else f"http_{resp.status_code}"
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            t1 = time.perf_counter()
            if w_start <= t1 <= w_end:
                if kind is None:
                    tally.latencies.append(t1 - t0)
                else:
                    tally.errors[kind] += 1
            i += 1

    # trust_env=False: loopback only, never through a proxy from the environment
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0), trust_env=False) as client:
        await asyncio.gather(mark(w_start, "start"), mark(w_end, "end"),
                             *(worker(client, k) for k in range(concurrency)))
    lat_ms = [x * 1000.0 for x in tally.latencies]
    window = duration or 1e-9
    used = {k: (tally.cpu[f"{k}_end"] - tally.cpu[f"{k}_start"]) / window for k in ("client", "server", "system")}
    return {
        "concurrency": concurrency, "duration_s": duration, "warmup_s": warmup,
        "requests": len(lat_ms), "errors": sum(tally.errors.values()), "error_kinds": dict(tally.errors),
        "throughput_rps": len(lat_ms) / window,
        "p50_ms": percentile(lat_ms, 50), "p95_ms": percentile(lat_ms, 95), "p99_ms": percentile(lat_ms, 99),
        "mean_ms": sum(lat_ms) / len(lat_ms) if lat_ms else float("nan"),
        "client_cpu_cores": used["client"],
        "server_cpu_cores": used["server"] if server_pid else None,
        # busy CPU of every other process on the machine during the window (noise from outside the benchmark)
        "other_cpu_cores": max(0.0, used["system"] - used["client"] - used["server"]) if server_pid else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_load", description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="the scoring endpoint, e.g. http://127.0.0.1:8123/v1/score")
    p.add_argument("--texts", required=True, help="JSON file holding a list of texts")
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--server-pid", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with open(args.texts, encoding="utf-8") as fh:
        texts = json.load(fh)
    keys = sorted(load_api_keys(os.environ))  # the server's own CT_API_KEYS*, if auth is on
    result = asyncio.run(drive(args.url, texts, args.concurrency, args.duration, args.warmup,
                               args.server_pid, keys[0] if keys else None, args.seed))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
