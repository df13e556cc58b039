"""Batch-CLI section of the benchmark: ``complaint-triage score`` as a subprocess on generated
JSONL files, its throughput against raw ONNX Runtime on the same messages, and its peak RSS at
N and at k×N rows (memory must not grow with the file).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from tools.corpus import write_messages_jsonl
from tools.measure import system_busy_seconds
from tools.server import child_env

GNU_TIME = Path("/usr/bin/time")
_MAXRSS = re.compile(r"Maximum resident set size \(kbytes\):\s*(\d+)")
_SUMMARY = re.compile(r"scored (\d+) rows in .*?: (\d+) ok, (\d+) errors")


def _score_cmd(bundle: Path, inp: Path, out: Path, batch_size: int) -> list[str]:
    exe = Path(sys.executable).with_name("complaint-triage")
    head = [str(exe)] if exe.is_file() else [sys.executable, "-m", "cli"]
    return [*head, "score", "--input", str(inp), "--output", str(out), "--model", str(bundle),
            "--batch-size", str(batch_size), "--quiet", "--restart"]


def _gnu_time_works() -> bool:
    if not GNU_TIME.is_file():
        return False
    probe = subprocess.run([str(GNU_TIME), "-v", "true"], capture_output=True, text=True, check=False)
    return probe.returncode == 0 and bool(_MAXRSS.search(probe.stderr))


def _poll_rss(proc: subprocess.Popen[bytes], peak: list[int], stop: threading.Event) -> None:
    """Fallback peak-RSS meter: sample the child and its descendants every 50 ms."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            total = 0
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total = max(total, p.memory_info().rss)
            peak[0] = max(peak[0], total)
            stop.wait(0.05)
    except psutil.Error:
        return


def _children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children (and their descendants)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_cli(bundle: Path, inp: Path, out: Path, batch_size: int) -> dict[str, Any]:
    """One ``score`` run: wall time (process start to exit, model load included), peak RSS, counts."""
    cmd = _score_cmd(bundle, inp, out, batch_size)
    use_time = _gnu_time_works()
    if use_time:
        cmd = [str(GNU_TIME), "-v", *cmd]
    peak, stop = [0], threading.Event()
    busy0, kids0 = system_busy_seconds(), _children_cpu()
    t0 = time.perf_counter()
    # own process group: /usr/bin/time dies on SIGTERM without passing it on, so stop the whole group
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(),
                            start_new_session=True)
    poller = None if use_time else threading.Thread(target=_poll_rss, args=(proc, peak, stop), daemon=True)
    if poller:
        poller.start()
    try:
        _, err_bytes = proc.communicate()
    except BaseException:  # interrupted: do not leave the scorer running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    finally:
        stop.set()
    seconds = time.perf_counter() - t0
    other = max(0.0, system_busy_seconds() - busy0 - (_children_cpu() - kids0)) / seconds
    err = err_bytes.decode(errors="replace")
    if proc.returncode != 0:
        own = err.split("\tCommand being timed:")[0].strip()  # the CLI's own stderr, without time's report
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {own[-1500:]}")
    m_rss, m_sum = _MAXRSS.search(err), _SUMMARY.search(err)
    rss_mb = int(m_rss.group(1)) / 1024 if m_rss else peak[0] / 2**20
    rows = int(m_sum.group(1)) if m_sum else None
    return {"rows": rows, "ok": int(m_sum.group(2)) if m_sum else None,
            "errors": int(m_sum.group(3)) if m_sum else None, "seconds": seconds,
            "rows_per_s": (rows or 0) / seconds, "peak_rss_mb": rss_mb,
            "rss_method": "/usr/bin/time -v" if use_time else "psutil polling (50 ms)",
            "cli_cpu_cores": (_children_cpu() - kids0) / seconds, "other_cpu_cores": other,
            "command": " ".join(cmd)}


class _RowAndError(msgspec.Struct):
    row: int
    error: str | None = None


def verify_output(out: Path, rows: int) -> dict[str, Any]:
    """Stream the CLI's output: exactly one record per input row, numbered 0 … rows − 1 in order."""
    dec = msgspec.json.Decoder(_RowAndError)
    n = errors = 0
    in_order = True
    with open(out, "rb") as fh:
        for line in fh:
            rec = dec.decode(line)
            in_order &= rec.row == n
            errors += rec.error is not None
            n += 1
    return {"rows_out": n, "rows_in": rows, "in_order": in_order, "error_rows": errors,
            "one_per_input_row": in_order and n == rows}


def batch_section(bundle: Path, records: list[dict[str, Any]], rows: int, scale: int, batch_size: int,
                  raw_throughput: Callable[[list[str], int], float], seed: int = 0,
                  raw_sample: int = 0) -> dict[str, Any]:
    """CLI at ``rows`` (+ raw ORT on the same texts, or on ``raw_sample`` of them drawn uniformly:
    a rate, so a large uniform sample measures the same thing in a tenth of the time) and at
    ``scale × rows`` (memory only)."""
    work = Path(tempfile.mkdtemp(prefix="ct-bench-batch-"))
    try:
        inp, out = work / "messages.jsonl", work / "scored.jsonl"
        print(f"  writing {rows:,} messages → {inp}", file=sys.stderr)
        texts = write_messages_jsonl(inp, records, rows, seed)
        print(f"  complaint-triage score on {rows:,} rows (batch size {batch_size})", file=sys.stderr)
        small = run_cli(bundle, inp, out, batch_size)
        small["output_check"] = verify_output(out, rows)
        print(f"    {small['rows_per_s']:.1f} rows/s, peak RSS {small['peak_rss_mb']:.0f} MB", file=sys.stderr)
        assembly = None
        if scale > 1:
            from tools.bench_assembly import measure

            print(f"  final-file assembly alone, per output format, {rows:,} vs {rows * scale:,} rows",
                  file=sys.stderr)
            assembly = measure(out, rows, scale)
        if 0 < raw_sample < len(texts):
            texts = random.Random(seed + 2).sample(texts, raw_sample)
        print(f"  raw ORT on {len(texts):,} of the same messages (batch size {batch_size})", file=sys.stderr)
        raw_n = len(texts)
        raw = raw_throughput(texts, batch_size)
        del texts
        big = None
        if scale > 1:
            inp.unlink()
            out.unlink(missing_ok=True)
            print(f"  writing {rows * scale:,} messages; complaint-triage score on them", file=sys.stderr)
            write_messages_jsonl(inp, records, rows * scale, seed + 1)
            big = run_cli(bundle, inp, out, batch_size)
            big["output_check"] = verify_output(out, rows * scale)
            print(f"    {big['rows_per_s']:.1f} rows/s, peak RSS {big['peak_rss_mb']:.0f} MB", file=sys.stderr)
        return {"rows": rows, "scale": scale, "batch_size": batch_size, "cli": small, "cli_scaled": big,
                "raw_ort_msgs_per_s": raw, "raw_ort_messages": raw_n, "assembly": assembly, "ratio_vs_raw": small["rows_per_s"] / raw if raw else None,
                "rss_growth": big["peak_rss_mb"] / small["peak_rss_mb"] - 1 if big else None}
    finally:
        shutil.rmtree(work, ignore_errors=True)
