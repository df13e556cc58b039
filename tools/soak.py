"""Soak test: the real server under steady load for minutes; RSS and throughput over time.

    python -m tools.soak --model BUNDLE [--duration 300] [--concurrency 16] [--interval 10]

Starts ``complaint-triage serve`` on a free loopback port, drives it from a separate load process
(``concurrency`` keep-alive connections, each sending the next request when the previous answer
arrives; requests of 1-8 corpus messages), samples the server's RSS (psutil) and the throughput
every ``interval`` seconds, prints a table over time and a summary (errors, RSS start/end/growth),
writes ``bench-results/soak.json`` and ``soak.md``, then stops the server with SIGTERM.

Exit status 1 when any request failed, the server did not stop cleanly, or RSS grew by more than
``--max-rss-growth-mb``. :class:`ServerProcess` is also used by the hostile-client tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

HOST = "127.0.0.1"  # loopback only
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m cli serve`` in a child process on loopback; stdout/stderr go to log files.

    ``env`` holds ``CT_*`` settings; ``CT_*`` variables of the calling environment are dropped so a
    run is reproducible. Use as a context manager: the server is stopped (SIGTERM, then SIGKILL) on exit.
    """

    def __init__(self, bundle: str | Path, *, log_dir: str | Path, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.bundle = Path(bundle)
        self.port = port or free_port()
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.log_dir / f"server-{self.port}.out"
        self.stderr_path = self.log_dir / f"server-{self.port}.err"
        base = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
        base.update({"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
        base["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
        self.env = {**base, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, wait_ready: bool = True, timeout: float = 120.0) -> ServerProcess:
        cmd = [sys.executable, "-m", "cli", "serve", "--model", str(self.bundle),
               "--host", HOST, "--port", str(self.port)]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=self.env, cwd=ROOT)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Poll ``/ready`` until 200; raise with the log if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} before ready:\n{self.logs()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout:.0f} s:\n{self.logs()[-3000:]}")

    def rss(self) -> int:
        """Resident set size of the server process in bytes."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait; SIGKILL after ``timeout``. Returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)

    def logs(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        parts = [p.read_text("utf-8", "replace") for p in (self.stdout_path, self.stderr_path) if p.exists()]
        return "\n".join(parts)

    def __enter__(self) -> ServerProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


# ----------------------------------------------------------------------------- load generator
def corpus_texts(limit: int = 5000) -> list[str]:
    """Message texts from data/corpus (realistic lengths and languages); synthetic if absent."""
    texts: list[str] = []
    for path in sorted((ROOT / "data" / "corpus").glob("*.jsonl")):
        for line in path.read_text("utf-8").splitlines():
            if line.strip():
                text = json.loads(line).get("text")
                if isinstance(text, str) and text.strip() and len(text) <= 20_000:
                    texts.append(text)
    if not texts:
        texts = [f"order {i} is late again, nobody answers my emails " * (1 + i % 5) for i in range(200)]
    return texts[:limit]


def _request_bodies(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    texts = corpus_texts()
    bodies = []
    for i in range(n):
        msgs = [{"id": f"soak-{i}-{k}", "text": rng.choice(texts)} for k in range(rng.randint(1, 8))]
        body = json.dumps({"messages": msgs}, ensure_ascii=False).encode("utf-8")
        head = (f"POST /v1/score HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        bodies.append(head + body)
    return bodies


@dataclass
class _Window:
    ok: int = 0
    messages: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


async def _drive(port: int, duration: float, concurrency: int, interval: float, queue: Any) -> None:
    requests = _request_bodies(512)
    window = _Window()
    end = time.monotonic() + duration

    async def worker(wid: int) -> None:
        nonlocal window
        rng = random.Random(wid)
        reader = writer = None
        while time.monotonic() < end:
            req = rng.choice(requests)
            t0 = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                assert reader is not None
                writer.write(req)
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                status = int(head.split(b" ", 2)[1])
                length = next(int(h.split(b":", 1)[1]) for h in head.split(b"\r\n")
                              if h.lower().startswith(b"content-length:"))
                body = await asyncio.wait_for(reader.readexactly(length), 30)
                if status == 200:
                    window.ok += 1
                    window.messages += body.count(b'"severity":')
                    window.latencies.append(time.perf_counter() - t0)
                else:
                    window.errors[str(status)] = window.errors.get(str(status), 0) + 1
                if b"connection: close" in head.lower():
                    writer.close()
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, StopIteration) as exc:
                window.errors[type(exc).__name__] = window.errors.get(type(exc).__name__, 0) + 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.05)
        if writer is not None:
            writer.close()

    async def reporter() -> None:
        nonlocal window
        start = time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, interval - ((time.monotonic() - start) % interval)))
            done, window = window, _Window()
            queue.put({"t": round(time.monotonic() - start, 1), "ok": done.ok, "messages": done.messages,
                       "errors": done.errors, "latencies": done.latencies})
            if time.monotonic() >= end:
                return

    workers = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    rep = asyncio.create_task(reporter())
    await asyncio.gather(*workers)
    await rep
    queue.put(None)


def _driver_main(port: int, duration: float, concurrency: int, interval: float, queue: Any) -> None:
    asyncio.run(_drive(port, duration, concurrency, interval, queue))


# ----------------------------------------------------------------------------- report
def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f}"


def run(bundle: Path, duration: float, concurrency: int, interval: float, out_dir: Path,
        max_growth_mb: float) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {"CT_LOG_LEVEL": "warning", "CT_MAX_QUEUE": str(max(2048, concurrency * 8 * 4))}
    server = ServerProcess(bundle, log_dir=out_dir / "soak-logs", env=env).start()
    rows: list[dict[str, Any]] = []
    try:
        proc = psutil.Process(server.pid)
        rss_start = proc.memory_info().rss
        cpu_last = proc.cpu_times()
        print(f"soak: server pid {server.pid} on {server.url}, RSS {rss_start / 2**20:.0f} MB; "
              f"{concurrency} connections for {duration:.0f} s, sample every {interval:.0f} s", flush=True)
        header = f"{'t (s)':>6} {'req':>7} {'req/s':>7} {'msg/s':>7} {'err':>5} {'p50 ms':>7} {'p95 ms':>7} " \
                 f"{'cpu %':>6} {'RSS MB':>7}"
        print(header, flush=True)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        driver = ctx.Process(target=_driver_main, args=(server.port, duration, concurrency, interval, queue),
                             name="soak-load", daemon=True)
        driver.start()
        last_t = 0.0
        while True:
            row = queue.get(timeout=duration + 120)
            if row is None:
                break
            rss = proc.memory_info().rss
            cpu = proc.cpu_times()
            span = max(1e-9, row["t"] - last_t)
            cpu_pct = 100 * ((cpu.user + cpu.system) - (cpu_last.user + cpu_last.system)) / span
            cpu_last, last_t = cpu, row["t"]
            lat = row.pop("latencies")
            row.update(req_s=row["ok"] / span, msg_s=row["messages"] / span, p50_s=_pct(lat, 0.5),
                       p95_s=_pct(lat, 0.95), rss_mb=rss / 2**20, cpu_pct=cpu_pct,
                       n_errors=sum(row["errors"].values()), alive=server.alive())
            rows.append(row)
            print(f"{row['t']:>6.0f} {row['ok']:>7} {row['req_s']:>7.1f} {row['msg_s']:>7.1f} {row['n_errors']:>5} "
                  f"{_ms(row['p50_s']):>7} {_ms(row['p95_s']):>7} {cpu_pct:>6.0f} {row['rss_mb']:>7.1f}", flush=True)
            if not server.alive():
                print("soak: the server died", file=sys.stderr)
                break
        driver.join(30)
        rss_end = proc.memory_info().rss if server.alive() else 0
    finally:
        exit_code = server.stop()
    errors: dict[str, int] = {}
    for row in rows:
        for k, v in row["errors"].items():
            errors[k] = errors.get(k, 0) + v
    total = sum(r["ok"] for r in rows)
    growth_mb = (rss_end - rss_start) / 2**20
    summary = {
        "bundle": str(bundle), "duration_s": duration, "concurrency": concurrency, "interval_s": interval,
        "requests_ok": total, "messages_scored": sum(r["messages"] for r in rows),
        "errors": errors, "error_count": sum(errors.values()),
        "throughput_req_s": total / max(1e-9, rows[-1]["t"]) if rows else 0.0,
        "rss_start_mb": rss_start / 2**20, "rss_end_mb": rss_end / 2**20, "rss_growth_mb": growth_mb,
        # the first sample is taken after `interval` s of load: what grows after it is steady-state growth
        "rss_first_sample_mb": rows[0]["rss_mb"] if rows else None,
        "rss_steady_growth_mb": (rss_end / 2**20 - rows[0]["rss_mb"]) if rows and rss_end else None,
        "rss_max_mb": max((r["rss_mb"] for r in rows), default=rss_start / 2**20),
        "server_exit_code": exit_code, "samples": rows,
    }
    problems = []
    if summary["error_count"]:
        problems.append(f"{summary['error_count']} failed requests {errors}")
    if exit_code != 0:
        problems.append(f"server exit status {exit_code}")
    if growth_mb > max_growth_mb:
        problems.append(f"RSS grew {growth_mb:.0f} MB > {max_growth_mb:.0f} MB")
    if not rows:
        problems.append("no samples")
    summary["verdict"] = "ok" if not problems else "; ".join(problems)
    print(f"\nrequests ok {total}, messages {summary['messages_scored']}, errors {summary['error_count']} {errors}")
    print(f"throughput {summary['throughput_req_s']:.1f} req/s; RSS start {summary['rss_start_mb']:.1f} MB, "
          f"end {summary['rss_end_mb']:.1f} MB, growth {growth_mb:+.1f} MB (after the first sample "
          f"{summary['rss_steady_growth_mb'] or 0:+.1f} MB), max {summary['rss_max_mb']:.1f} MB; "
          f"server exit {exit_code}; verdict: {summary['verdict']}")
    (out_dir / "soak.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out_dir / "soak.md").write_text(_markdown(summary), encoding="utf-8")
    print(f"wrote {out_dir / 'soak.json'} and {out_dir / 'soak.md'}")
    return 0 if not problems else 1


def _markdown(s: dict[str, Any]) -> str:
    lines = [
        "# Soak test", "",
        f"Bundle `{s['bundle']}`, {s['concurrency']} keep-alive connections for {s['duration_s']:.0f} s "
        f"(closed loop, 1-8 corpus messages per request), sampled every {s['interval_s']:.0f} s.", "",
        "| t (s) | requests | req/s | msg/s | errors | p50 ms | p95 ms | server CPU % | RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in s["samples"]:
        lines.append(f"| {r['t']:.0f} | {r['ok']} | {r['req_s']:.1f} | {r['msg_s']:.1f} | {r['n_errors']} | "
                     f"{_ms(r['p50_s'])} | {_ms(r['p95_s'])} | {r['cpu_pct']:.0f} | {r['rss_mb']:.1f} |")
    lines += [
        "", f"- requests answered 200: {s['requests_ok']} ({s['messages_scored']} messages), "
            f"{s['throughput_req_s']:.1f} req/s",
        f"- errors: {s['error_count']} {s['errors'] or ''}".rstrip(),
        f"- RSS: start (idle, before load) {s['rss_start_mb']:.1f} MB, end {s['rss_end_mb']:.1f} MB, "
        f"growth {s['rss_growth_mb']:+.1f} MB; after the first sample (warm) {s['rss_steady_growth_mb'] or 0:+.1f} MB; "
        f"max {s['rss_max_mb']:.1f} MB",
        f"- server exit status after SIGTERM: {s['server_exit_code']}",
        f"- verdict: {s['verdict']}", "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", "--bundle", dest="bundle", type=Path, default=Path("artifacts/bundle"))
    p.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    p.add_argument("--concurrency", type=int, default=16, help="keep-alive connections (default 16)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results", help="output directory")
    p.add_argument("--max-rss-growth-mb", type=float, default=300.0, help="fail above this RSS growth")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.concurrency <= 0 or args.interval <= 0:
        p.error("--duration, --concurrency and --interval must be positive")
    return run(args.bundle, args.duration, args.concurrency, args.interval, args.out, args.max_rss_growth_mb)


if __name__ == "__main__":
    sys.exit(main())
