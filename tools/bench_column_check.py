"""How fast a wrong column stops ``complaint-triage score``: a typo'd ``--text-col`` on a
million-row CSV, JSONL and Parquet file, timed end to end in a fresh process (interpreter start,
imports, the check, the message), next to the time of ``score --help`` (start-up alone) and the bytes
the check itself reads (Linux ``/proc/self/io`` rchar).

    python -m tools.bench_column_check --rows 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LINE = "my parcel never arrived and support ignores me again, refund me now"


def make_files(root: Path, rows: int) -> dict[str, Path]:
    """One file per format, ``rows`` rows each (written in bulk: seconds, not minutes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = {"csv": root / "big.csv", "jsonl": root / "big.jsonl", "parquet": root / "big.parquet"}
    files["csv"].write_text("id,text,created_at\n" + f"7,{LINE},2/24/2015 11:35\n" * rows, encoding="utf-8")
    files["jsonl"].write_text((json.dumps({"id": "7", "text": LINE, "user": {"followers_count": 5}}) + "\n") * rows,
                              encoding="utf-8")
    texts = pa.array([f"{LINE} #{i}" for i in range(rows)])  # distinct rows: a file of realistic size
    pq.write_table(pa.table({"id": pa.repeat("7", rows), "text": texts}), files["parquet"])
    return files


def _run(args: list[str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, proc.returncode, proc.stderr.strip()


def read_bytes(path: Path, fmt: str) -> int:
    """Bytes the column check reads on this file (in this process)."""
    from service.batch.columns import check_columns
    from service.batch.config import Columns, JobConfig
    from service.errors import UsageError

    def rchar() -> int:
        return int(next(x for x in Path("/proc/self/io").read_text().splitlines() if x.startswith("rchar:")).split()[1])

    job = JobConfig(input=str(path), output="unused.jsonl", input_format=fmt, columns=Columns(text="txt"))
    before = rchar()
    with contextlib.suppress(UsageError):  # the typo is the point
        check_columns(job)
    return rchar() - before


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3, help="runs per file (the best is reported)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = make_files(root, args.rows)
        startup = min(_run(["score", "--help"])[0] for _ in range(args.repeat))
        print(f"score --help (start-up only): {startup:.2f} s")
        for fmt, path in files.items():
            runs = [_run(["score", "--input", str(path), "--output", str(root / "out.jsonl"), "--text-col", "txt"])
                    for _ in range(args.repeat)]
            best, code, err = min(runs)
            print(f"{fmt:>8}: {path.stat().st_size / 2**20:6.0f} MiB, {args.rows:,} rows: exit {code} in {best:.2f} s; "
                  f"check read {read_bytes(path, fmt) / 1024:.0f} KiB")
        print(f"message: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
