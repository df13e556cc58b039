"""Peak memory of the batch CLI's last step, assembling ``OUT`` from ``OUT.partial``, per output
format, at N and k×N rows: the part that touches every row once more after scoring.

Each measurement runs in a fresh child process (so peaks do not mix) on a part store filled with
hard links to one real scored part (``--chunk-rows`` records taken from a scored JSONL file), the
layout a real run leaves behind. No model is loaded: this isolates the writers, whose memory must
not grow with the number of rows; the CLI frees its model before this step.

    python -m tools.bench_assembly SCORED.jsonl --rows 200000 --scale 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from service.batch.config import FORMATS


def _peak_rss() -> int:
    """This process's peak RSS in bytes. Linux: VmHWM, the high-water mark of the process's own memory;
    ``ru_maxrss`` is not that: after exec it starts at the peak of the process that spawned it (measured:
    a child of a 611 MB process reported 611 MB, VmHWM 11 MB), which inflated every figure when the
    benchmark, holding a model, ran this harness."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(fmt: str, rows: int, part: str, work: str) -> dict[str, Any]:
    from service.batch.store import PartStore, assemble
    from tools.measure import rss_bytes

    out = Path(work) / f"out-{rows}.{fmt}"
    store = PartStore(out, {"bench": "assembly"}, restart=True)
    with open(part, "rb") as fh:
        lines = fh.readlines()
    step = len(lines)
    for start in range(0, rows, step):
        end = min(rows, start + step)
        dst = store.dir / f"part-{start:012d}-{end:012d}.jsonl"
        if end - start == step:
            os.link(part, dst)
        else:
            dst.write_bytes(b"".join(lines[: end - start]))
    del lines
    import pyarrow  # noqa: F401  (the Parquet writer imports it anyway: part of the baseline, not the peak)

    before = rss_bytes(os.getpid())
    counts = assemble(store, str(out), fmt, ())
    peak = _peak_rss()
    size = out.stat().st_size
    out.unlink()
    return {"format": fmt, "rows": rows, "rows_out": counts.rows, "rss_before_mb": before / 2**20,
            "peak_rss_mb": peak / 2**20, "added_mb": (peak - before) / 2**20, "output_mb": size / 2**20}


def measure(scored: Path, rows: int, scale: int, chunk_rows: int = 8192,
            formats: tuple[str, ...] = FORMATS) -> list[dict[str, Any]]:
    """Assembly peak RSS per format at ``rows`` and ``scale × rows`` (one child process each)."""
    work = Path(tempfile.mkdtemp(prefix="ct-bench-assembly-"))
    try:
        part = work / "template.jsonl"
        with open(scored, "rb") as src, open(part, "wb") as dst:
            dst.writelines(itertools.islice(src, chunk_rows))
        out = []
        for fmt in formats:
            for n in (rows, rows * scale):
                proc = subprocess.run([sys.executable, "-m", "tools.bench_assembly", "--child", fmt, str(n),
                                       str(part), str(work)], capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise RuntimeError(f"assembly of {n} {fmt} rows failed: {proc.stderr[-1500:]}")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"    assemble {fmt:>7} {n:>9,} rows: +{res['added_mb']:.0f} MB over the "
                      f"{res['rss_before_mb']:.0f} MB baseline", file=sys.stderr)
                out.append(res)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        fmt, rows, part, work = argv[1], int(argv[2]), argv[3], argv[4]
        print(json.dumps(_child(fmt, rows, part, work)))
        return 0
    p = argparse.ArgumentParser(prog="python -m tools.bench_assembly", description=__doc__.split("\n\n")[0])
    p.add_argument("scored", type=Path, help="a JSONL file written by `complaint-triage score`")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--scale", type=int, default=5)
    p.add_argument("--chunk-rows", type=int, default=8192)
    args = p.parse_args(argv)
    res = measure(args.scored, args.rows, args.scale, args.chunk_rows)
    print("| format | rows | baseline RSS MB | peak RSS MB | added MB | output MB |\n|---|---:|---:|---:|---:|---:|")
    for r in res:
        print(f"| {r['format']} | {r['rows']:,} | {r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
              f"{r['added_mb']:.0f} | {r['output_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
