"""Soak test: the real server under steady load for minutes; RSS and throughput over time.

    python -m tools.soak --model BUNDLE [--duration 300] [--concurrency 16] [--interval 10]

Starts ``complaint-triage serve`` on a free loopback port (:class:`tools.server.ServerProcess`),
drives it from a separate load process (:func:`tools.load.closed_loop`: ``concurrency`` keep-alive
connections, each sending the next request when the previous answer arrives; requests of 1-8
corpus messages), samples the server's RSS and the throughput every ``interval`` seconds, prints a
table over time and a summary (errors, RSS start/end/growth), writes ``bench-results/soak.json`` and
``soak.md``, then stops the server with SIGTERM.

Exit status 1 when any request failed, the server did not stop cleanly, or RSS grew by more than
``--max-rss-growth-mb``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.corpus import ROOT, load_records
from tools.load import closed_loop
from tools.measure import percentile, process_cpu_seconds
from tools.server import ServerProcess


def _request_bodies(n: int, seed: int = 0) -> list[bytes]:
    """``n`` request bodies of 1-8 corpus messages each (texts the server accepts: at most 20k characters)."""
    rng = random.Random(seed)
    texts = [r["text"] for r in load_records(subsets=("corpus",)) if len(r["text"]) <= 20_000][:5000]
    bodies = []
    for i in range(n):
        msgs = [{"id": f"soak-{i}-{k}", "text": rng.choice(texts)} for k in range(rng.randint(1, 8))]
        bodies.append(json.dumps({"messages": msgs}, ensure_ascii=False).encode("utf-8"))
    return bodies


@dataclass
class _Window:
    ok: int = 0
    messages: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


async def _drive(url: str, duration: float, concurrency: int, interval: float, queue: Any) -> None:
    window = _Window()
    end = time.perf_counter() + duration

    def record(status: int | str, seconds: float, body: bytes, _done: float) -> None:
        if status == 200:
            window.ok += 1
            window.messages += body.count(b'"severity":')
            window.latencies.append(seconds)
        else:
            window.errors[str(status)] = window.errors.get(str(status), 0) + 1

    async def reporter() -> None:
        nonlocal window
        start = time.perf_counter()
        while True:
            await asyncio.sleep(max(0.0, interval - ((time.perf_counter() - start) % interval)))
            done, window = window, _Window()
            queue.put({"t": round(time.perf_counter() - start, 1), "ok": done.ok, "messages": done.messages,
                       "errors": done.errors, "latencies": done.latencies})
            if time.perf_counter() >= end:
                return

    await asyncio.gather(closed_loop(url, _request_bodies(512), concurrency, end, record, timeout=30.0), reporter())
    queue.put(None)


def _driver_main(url: str, duration: float, concurrency: int, interval: float, queue: Any) -> None:
    asyncio.run(_drive(url, duration, concurrency, interval, queue))


# ----------------------------------------------------------------------------- report
def _pct(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f}"


def run(bundle: Path, duration: float, concurrency: int, interval: float, out_dir: Path,
        max_growth_mb: float) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {"CT_LOG_LEVEL": "warning", "CT_MAX_QUEUE": str(max(2048, concurrency * 8 * 4))}
    server = ServerProcess(bundle, log_dir=out_dir / "soak-logs", env=env).start()
    rows: list[dict[str, Any]] = []
    try:
        rss_start = server.rss()
        cpu_last = process_cpu_seconds(server.pid)
        print(f"soak: server pid {server.pid} on {server.url}, RSS {rss_start / 2**20:.0f} MB; "
              f"{concurrency} connections for {duration:.0f} s, sample every {interval:.0f} s", flush=True)
        header = f"{'t (s)':>6} {'req':>7} {'req/s':>7} {'msg/s':>7} {'err':>5} {'p50 ms':>7} {'p95 ms':>7} " \
                 f"{'cpu %':>6} {'RSS MB':>7}"
        print(header, flush=True)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        driver = ctx.Process(target=_driver_main, args=(server.score_url, duration, concurrency, interval, queue),
                             name="soak-load", daemon=True)
        driver.start()
        last_t = 0.0
        while True:
            row = queue.get(timeout=duration + 120)
            if row is None:
                break
            rss = server.rss()
            cpu = process_cpu_seconds(server.pid)
            span = max(1e-9, row["t"] - last_t)
            cpu_pct = 100 * (cpu - cpu_last) / span
            cpu_last, last_t = cpu, row["t"]
            lat = row.pop("latencies")
            row.update(req_s=row["ok"] / span, msg_s=row["messages"] / span, p50_s=_pct(lat, 50),
                       p95_s=_pct(lat, 95), rss_mb=rss / 2**20, cpu_pct=cpu_pct,
                       n_errors=sum(row["errors"].values()), alive=server.alive())
            rows.append(row)
            print(f"{row['t']:>6.0f} {row['ok']:>7} {row['req_s']:>7.1f} {row['msg_s']:>7.1f} {row['n_errors']:>5} "
                  f"{_ms(row['p50_s']):>7} {_ms(row['p95_s']):>7} {cpu_pct:>6.0f} {row['rss_mb']:>7.1f}", flush=True)
            if not server.alive():
                print("soak: the server died", file=sys.stderr)
                break
        driver.join(30)
        rss_end = server.rss() if server.alive() else 0
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
