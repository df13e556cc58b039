"""The one HTTP client of the tools: a closed-loop load generator, plus two one-shot requests.

``python -m tools.load --url URL --texts FILE --concurrency N --duration S --warmup W``

:func:`closed_loop`: N asyncio workers share one httpx client (keep-alive, one connection each);
every worker sends a request, waits for the answer, and sends the next, until a deadline; each
answer is handed to a callback. The benchmark runs it in this module's own process (one message
per request; after ``W`` seconds of warm-up, requests that complete during the next ``S`` seconds
are counted; prints one JSON object: throughput, latency percentiles, errors, and the CPU used by
this process and by the server ``--server-pid``); the soak test and the overload test drive it
with their own bodies. An API key from ``CT_API_KEYS`` / ``CT_API_KEYS_FILE`` is sent when set.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from tools.measure import percentile, process_cpu_seconds, system_busy_seconds

#: (status code or error name, seconds from send to answer, response body, perf_counter at the answer)
OnResponse = Callable[[int | str, float, bytes, float], None]


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if api_key is None:
        from service.api.settings import load_api_keys  # the server's own CT_API_KEYS*, if auth is on

        keys = sorted(load_api_keys(os.environ))
        api_key = keys[0] if keys else None
    if api_key:
        headers["x-api-key"] = api_key
    return headers


def get_status(url: str, timeout: float = 2.0) -> int:
    """Status of one GET (0 when nothing answers)."""
    try:
        return httpx.get(url, timeout=timeout, trust_env=False).status_code
    except httpx.HTTPError:
        return 0


def post_json(url: str, payload: dict[str, Any], timeout: float = 60.0) -> tuple[int, Any]:
    """One POST with a JSON body; returns (status, decoded body or None)."""
    r = httpx.post(url, json=payload, headers=_headers(None), timeout=timeout, trust_env=False)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, None


async def closed_loop(url: str, bodies: Sequence[bytes], concurrency: int, until: float, on_response: OnResponse,
                      *, api_key: str | None = None, timeout: float = 120.0) -> None:
    """``concurrency`` workers POST ``bodies`` (each starting at its own offset, then in order) until
    ``time.perf_counter()`` passes ``until``."""
    headers = _headers(api_key)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient, k: int) -> None:
        i = k * max(1, len(bodies) // concurrency)
        while (t0 := time.perf_counter()) < until:
            try:
                resp = await client.post(url, content=bodies[i % len(bodies)], headers=headers)
                status: int | str = resp.status_code
                body = resp.content
            except httpx.HTTPError as exc:
                status, body = type(exc).__name__, b""
            t1 = time.perf_counter()
            on_response(status, t1 - t0, body, t1)
            i += 1

    # trust_env=False: loopback only, never through a proxy from the environment
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout), trust_env=False) as client:
        await asyncio.gather(*(worker(client, k) for k in range(concurrency)))


async def lean_closed_loop(url: str, bodies: Sequence[bytes], concurrency: int, until: float,
                           on_response: OnResponse, *, api_key: str | None = None, timeout: float = 120.0) -> None:
    """:func:`closed_loop` on a minimal HTTP/1.1 keep-alive client over asyncio streams (the benchmark's).

    The load generator shares the cores with the server it measures: httpx spent ~1 ms of CPU per
    request there (0.13 of 2 cores at 116 req/s), taken from the server. This client sends pre-built
    request bytes and reads the status line, ``Content-Length`` and body: the same requests on the
    wire for a fraction of the CPU. It expects what the servers it drives send (a Content-Length on
    every answer); anything else is counted as an error and the connection is reopened.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in _headers(api_key).items()))
    requests = [f"{head}content-length: {len(b)}\r\n\r\n".encode() + b for b in bodies]

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> tuple[int, bytes, bool]:
        writer.write(req)
        raw = await reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        low = raw.lower()
        at = low.find(b"\r\ncontent-length:")
        if at < 0:
            raise ValueError("answer without Content-Length")
        length = int(low[at + 18:low.index(b"\r\n", at + 2)])
        return status, await reader.readexactly(length), b"\r\nconnection: close" in low

    async def worker(k: int) -> None:
        i = k * max(1, len(requests) // concurrency)
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while (t0 := time.perf_counter()) < until:
            try:
                conn = conn or await asyncio.open_connection(host, port)
                status, body, close = await asyncio.wait_for(exchange(*conn, requests[i % len(requests)]), timeout)
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError) as exc:
                status, body, close = type(exc).__name__, b"", True
            t1 = time.perf_counter()
            on_response(status, t1 - t0, body, t1)
            if close and conn is not None:
                conn[1].close()
                conn = None
            i += 1
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))


def one_message_bodies(texts: Sequence[str], seed: int) -> list[bytes]:
    """Pre-encoded request bodies (one message each), in a seeded order, so the client spends
    its CPU on HTTP rather than on JSON encoding."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [json.dumps({"messages": [{"id": f"load-{i}", "text": texts[i]}]}, ensure_ascii=False).encode()
            for i in order]


@dataclass
class _Tally:
    """What the benchmark counts during the measured window."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)


async def drive(url: str, texts: Sequence[str], concurrency: int, duration: float, warmup: float,
                server_pid: int | None = None, seed: int = 0, client: str = "lean") -> dict[str, Any]:
    """The benchmark's run: warm up, then summarise the measured window."""
    tally = _Tally()
    start = time.perf_counter()
    w_start, w_end = start + warmup, start + warmup + duration

    def record(status: int | str, seconds: float, _body: bytes, done: float) -> None:
        if w_start <= done <= w_end:
            if status == 200:
                tally.latencies.append(seconds)
            else:
                tally.errors[f"http_{status}" if isinstance(status, int) else status] += 1

    async def mark(at: float, name: str) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        tally.cpu[f"client_{name}"] = time.process_time()
        tally.cpu[f"server_{name}"] = process_cpu_seconds(server_pid)
        tally.cpu[f"system_{name}"] = system_busy_seconds()

    await asyncio.gather(mark(w_start, "start"), mark(w_end, "end"),
                         (lean_closed_loop if client == "lean" else closed_loop)(
                             url, one_message_bodies(texts, seed), concurrency, w_end, record))
    lat_ms = [x * 1000.0 for x in tally.latencies]
    window = duration or 1e-9
    used = {k: (tally.cpu[f"{k}_end"] - tally.cpu[f"{k}_start"]) / window for k in ("client", "server", "system")}
    return {
        "concurrency": concurrency, "duration_s": duration, "warmup_s": warmup, "client": client,
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
    p = argparse.ArgumentParser(prog="python -m tools.load", description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="the scoring endpoint, e.g. http://127.0.0.1:8123/v1/score")
    p.add_argument("--texts", required=True, help="JSON file holding a list of texts")
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--server-pid", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--client", choices=("lean", "httpx"), default="lean",
                   help="HTTP client: the minimal keep-alive one (default) or httpx")
    args = p.parse_args(argv)
    with open(args.texts, encoding="utf-8") as fh:
        texts = json.load(fh)
    result = asyncio.run(drive(args.url, texts, args.concurrency, args.duration, args.warmup,
                               args.server_pid, args.seed, args.client))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
