"""``complaint-triage score``: stream a file of messages through the scorer, resumably.

Output is built in ``OUT.partial/`` as numbered part files, each written atomically and named by
the input rows it covers. A re-run with the same arguments skips the rows already done; the
final file is assembled under a temporary name and renamed, so ``OUT`` is never half-written and
holds exactly one row per input row.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator

import msgspec

from model.bundle import BundleError
from service.batch.formats import FORMATS, FinalWriter, count_rows, detect_format, encode_records, read_rows
from service.batch.rows import Columns, error_kind

PART = re.compile(r"part-(\d{12})-(\d{12})\.jsonl$")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="JSONL, CSV or Parquet file; '-' reads JSONL from stdin")
    p.add_argument("--output", required=True, help="JSONL, CSV or Parquet file ('-' writes JSONL to stdout)")
    p.add_argument("--model", "--bundle", dest="bundle", default="artifacts/bundle")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--input-format", choices=FORMATS, default=None)
    p.add_argument("--output-format", choices=FORMATS, default=None)
    for name, default in asdict(Columns()).items():
        if name != "keep":
            p.add_argument(f"--{name.replace('_', '-')}-col", dest=f"col_{name}", default=default,
                           help=f"input column for {name} (default {default!r})")
    p.add_argument("--keep", default="", help="comma-separated input columns to copy to the output")
    p.add_argument("--chunk-rows", type=int, default=8192, help="rows per durable output part (resume unit)")
    p.add_argument("--batch-size", type=int, default=32, help="model batch size (rows are grouped by length)")
    p.add_argument("--max-text-chars", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = all cores)")
    p.add_argument("--priority-config", default=None, help="priority TOML (default: the shipped rules)")
    p.add_argument("--timezone", default=None, help="business-hours time zone override")
    p.add_argument("--restart", action="store_true", help="discard a previous partial run instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--actors", type=int, default=2, help="Ray: scorer actors")
    p.add_argument("--cpus-per-actor", type=int, default=1, help="Ray: CPUs (and ORT threads) per actor")
    p.add_argument("--read-rows", type=int, default=65_536, help="Ray: rows per read task")


def columns_from(args: argparse.Namespace) -> Columns:
    names = {k: getattr(args, f"col_{k}") for k in asdict(Columns()) if k != "keep"}
    keep = tuple(dict.fromkeys(c.strip() for c in args.keep.split(",") if c.strip()))
    from service.contract.schemas import Result

    taken = sorted(set(keep) & ({"row", "error"} | set(Result.__struct_fields__)))
    if taken:
        raise ValueError(f"--keep {','.join(taken)}: already output column(s) of the scoring contract; "
                         "rename the input column, or drop it from --keep (the input id is always kept as 'id')")
    return Columns(**names, keep=keep)


class PartStore:
    """The ``OUT.partial`` directory: manifest + contiguous, atomically written parts."""

    def __init__(self, out: Path, manifest: dict[str, Any], restart: bool) -> None:
        self.dir = out.with_name(out.name + ".partial")
        if restart:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest = json.loads(json.dumps(manifest))  # as stored: tuples become lists, else never equal
        mpath = self.dir / "manifest.json"
        if mpath.exists():
            old = json.loads(mpath.read_text())
            if old != manifest:
                changed = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
                raise SystemExit(f"complaint-triage: {self.dir} holds a partial run of a different job "
                                 f"(differs in: {', '.join(changed)}); re-run with --restart to discard it")
        else:  # atomically: a kill mid-write must not leave a truncated manifest behind
            tmp = mpath.with_suffix(".tmp")
            tmp.write_text(json.dumps(manifest, indent=2))
            os.replace(tmp, mpath)

    def parts(self) -> list[tuple[int, int, Path]]:
        """Contiguous parts from row 0; anything after a gap is stale and removed."""
        found = sorted((int(m[1]), int(m[2]), p) for p in self.dir.iterdir() if (m := PART.match(p.name)))
        done, keep = 0, []
        for start, end, path in found:
            if start == done:
                keep.append((start, end, path))
                done = end
            else:
                path.unlink()
        return keep

    def done_rows(self) -> int:
        parts = self.parts()
        return parts[-1][1] if parts else 0

    def add(self, start: int, records: list[dict[str, Any]]) -> None:
        end = start + len(records)
        final = self.dir / f"part-{start:012d}-{end:012d}.jsonl"
        tmp = final.with_suffix(".tmp")
        tmp.write_bytes(encode_records(records))
        os.replace(tmp, final)


def _manifest(args: argparse.Namespace, cols: Columns, in_fmt: str, out_fmt: str, model_sha: str) -> dict[str, Any]:
    src: dict[str, Any] = {"input": args.input}
    if args.input != "-":
        st = os.stat(args.input)
        src.update(input=str(Path(args.input).resolve()), size=st.st_size, mtime_ns=st.st_mtime_ns)
    return {**src, "input_format": in_fmt, "output_format": out_fmt, "columns": asdict(cols),
            "model_sha256": model_sha, "max_text_chars": args.max_text_chars,
            "priority_config": args.priority_config, "timezone": args.timezone}


def chunked(rows: Iterable[Any], size: int, start: int) -> Iterator[tuple[int, list[tuple[int, Any]]]]:
    """Group raw rows into (first_row_no, [(row_no, raw), ...]) chunks."""
    buf: list[tuple[int, Any]] = []
    first = row_no = start
    for raw in rows:
        buf.append((row_no, raw))
        row_no += 1
        if len(buf) == size:
            yield first, buf
            buf, first = [], row_no
    if buf:
        yield first, buf


class _ErrorOnly(msgspec.Struct):
    error: str | None = None


def _count(data: bytes, counts: Counter[str]) -> None:
    dec = msgspec.json.Decoder(_ErrorOnly)
    for line in data.splitlines():
        err = dec.decode(line).error
        counts["ok" if err is None else error_kind(err)] += 1


def assemble(store: PartStore, out: str, fmt: str, keep: tuple[str, ...]) -> Counter[str]:
    """Concatenate parts into the final file (temp name, then rename), drop the parts, and
    count ok/error rows over the whole job (resumed runs included)."""
    counts: Counter[str] = Counter()
    parts = store.parts()
    if out == "-":
        for _, _, p in parts:
            data = p.read_bytes()
            _count(data, counts)
            sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        final = Path(out)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        writer = FinalWriter(tmp, fmt, keep)
        for _, _, p in parts:
            data = p.read_bytes()
            _count(data, counts)
            writer.write_jsonl_bytes(data)
        writer.close()
    # Retire OUT.partial with one rename *before* OUT appears, then delete it: a kill can never leave
    # OUT next to a half-deleted OUT.partial (rmtree is not atomic; a later run would resume from the
    # surviving parts, under a fresh manifest if manifest.json had gone first).
    retired = store.dir.with_name(f".{store.dir.name}.done-{os.getpid()}")
    shutil.rmtree(retired, ignore_errors=True)
    os.rename(store.dir, retired)
    if out != "-":
        os.replace(tmp, final)
    shutil.rmtree(retired)
    return counts


def _summary(counts: Counter[str], rows: int, seconds: float, out: str) -> None:
    errors = sum(v for k, v in counts.items() if k != "ok")
    print(f"scored {rows} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):.0f} rows/s): "
          f"{counts['ok']} ok, {errors} errors → {out}", file=sys.stderr)
    for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        if reason != "ok":
            print(f"  {n:>8}  {reason}", file=sys.stderr)


def run_local(args: argparse.Namespace, cols: Columns, in_fmt: str, store: PartStore,
              scorer: Any, prio: Any) -> int:
    """Score the rows not yet in the store, one durable part per chunk."""
    from tqdm import tqdm

    from service.batch.rows import score_rows

    done = store.done_rows()
    show = not args.quiet and sys.stderr.isatty()
    total = count_rows(args.input, in_fmt) if show else None  # only the progress bar's ETA needs it
    with tqdm(total=total, initial=done, unit="row", disable=not show, dynamic_ncols=True, smoothing=0.1) as bar:
        for first, chunk in chunked(read_rows(args.input, in_fmt, skip=done), args.chunk_rows, done):
            records = score_rows(scorer, prio, chunk, cols, args.max_text_chars)
            store.add(first, records)
            bar.update(len(records))
    return store.done_rows()


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc keeps it otherwise: measured,
    a freed fp32 bundle left RSS at 456 MB instead of 73 MB until ``malloc_trim``)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # musl or another libc: nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def main(args: argparse.Namespace) -> int:
    """Exit 0 on success (error rows included), 1 on a fatal problem, 130 when interrupted."""
    from model.scorer import Scorer
    from service.contract.priority import load_config

    t0 = time.monotonic()
    try:
        in_fmt = detect_format(args.input, args.input_format)
        out_fmt = detect_format(args.output, args.output_format)
        if args.input != "-" and not os.access(args.input, os.R_OK):
            raise OSError(f"cannot read input {args.input!r}")
        cols = columns_from(args)
        scorer = Scorer.load(args.bundle, intra_op_threads=args.threads, batch_size=args.batch_size)
        prio = load_config(args.priority_config, timezone_name=args.timezone)
    except (BundleError, OSError, ValueError) as exc:
        print(f"complaint-triage score: {exc}", file=sys.stderr)
        return 1
    out = Path(args.output if args.output != "-" else f"stdout-{os.getpid()}.jsonl")
    store = PartStore(out, _manifest(args, cols, in_fmt, out_fmt, scorer.meta.files.get("model.onnx", "")),
                      args.restart or args.input == "-")
    try:
        if args.engine == "ray":
            from service.batch.ray_engine import run_ray

            del scorer  # the bundle is checked; every actor loads its own copy
            release_memory()
            rows = run_ray(args, cols, in_fmt, store)
        else:
            rows = run_local(args, cols, in_fmt, store, scorer, prio)
            # free the model (weights + ORT arena) before assembling the final file, so the peak is
            # the larger of scoring and assembly, not their sum
            del scorer
            release_memory()
    except KeyboardInterrupt:
        print(f"\ninterrupted after {store.done_rows()} rows; re-run the same command to resume",
              file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"complaint-triage score: {exc}", file=sys.stderr)
        return 1
    counts = assemble(store, args.output, out_fmt, cols.keep)
    _summary(counts, rows, time.monotonic() - t0, args.output)
    return 0
