"""``--engine ray``: the same row parser and scorer, scaled out with Ray Data.

read (Ray Data) → ``map_batches(RayScorer)`` (one ONNX session per actor, ORT threads = CPUs per
actor) → ordered stream back to the driver → the same durable parts and final writer as the local
engine, so both engines produce the same file. Connects to ``RAY_ADDRESS`` when set, else starts
a local Ray instance.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from service.batch_rows import Columns

ROW_COL = "__raw"


class RayScorer:
    """Ray Data callable class: loads the bundle once per actor."""

    def __init__(self, bundle: str, threads: int, batch_size: int, cols: dict[str, Any], max_chars: int,
                 priority_config: str | None, timezone: str | None) -> None:
        from model.scorer import Scorer
        from service.priority import load_config

        self.scorer = Scorer.load(bundle, intra_op_threads=threads, batch_size=batch_size)
        self.priority = load_config(priority_config, timezone_name=timezone)
        self.cols = Columns(**{**cols, "keep": tuple(cols["keep"])})
        self.max_chars = max_chars

    def __call__(self, batch: Any) -> dict[str, Any]:
        import msgspec

        from service.batch_rows import score_rows

        # a pyarrow batch → Python rows exactly as the local reader makes them (numpy batches turned
        # nullable ints into floats and ns timestamps into ints)
        raws: list[Any] = batch.to_pylist()
        if ROW_COL in batch.column_names:  # JSONL: raw lines, parsed here so bad lines become error records
            raws = [r[ROW_COL] for r in raws]
        records = score_rows(self.scorer, self.priority, list(enumerate(raws)), self.cols, self.max_chars)
        return {"record": [msgspec.json.encode(r) for r in records]}


def _lines(file_row: dict[str, Any]) -> list[dict[str, bytes]]:
    """One file's bytes → its non-blank lines, split exactly as :func:`service.batch_io.read_rows` does."""
    import io

    return [{ROW_COL: line} for line in io.BytesIO(file_row["bytes"]) if line.strip()]


def _read(path: str, fmt: str) -> Any:
    import ray.data

    if fmt == "jsonl":
        # raw bytes split like the local reader: read_text decodes the whole file (one invalid UTF-8
        # byte failed the job) and splits with str.splitlines (U+2028 etc. inside a JSON string split a row)
        return ray.data.read_binary_files(path).flat_map(_lines)
    if fmt == "csv":
        import pyarrow.csv as pacsv

        with open(path, encoding="utf-8-sig", errors="replace") as fh:  # pyarrow skips a BOM too
            header = fh.readline().strip().split(",")
        import pyarrow as pa

        return ray.data.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={h.strip('"'): pa.string() for h in header}))
    return ray.data.read_parquet(path)


def run_ray(args: argparse.Namespace, cols: Columns, in_fmt: str, store: Any) -> int:
    """Run on Ray; results stream back in input order into the part store."""
    import msgspec
    import ray

    if args.input == "-":
        raise OSError("--engine ray reads files, not stdin")
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # rows come back in input order
    ctx.enable_progress_bars = not args.quiet
    ds = _read(os.path.abspath(args.input), in_fmt)
    from dataclasses import asdict

    scored = ds.map_batches(
        RayScorer, batch_size=args.chunk_rows, batch_format="pyarrow", concurrency=args.actors,
        num_cpus=args.cpus_per_actor,
        fn_constructor_kwargs={"bundle": os.path.abspath(args.bundle), "threads": args.cpus_per_actor,
                               "batch_size": args.batch_size, "cols": asdict(cols),
                               "max_chars": args.max_text_chars, "priority_config": args.priority_config,
                               "timezone": args.timezone})
    store_rows = 0
    for parts in [store.parts()]:
        for _, _, p in parts:
            p.unlink()  # Ray runs are not resumed: start clean
    dec = msgspec.json.Decoder()
    for batch in scored.iter_batches(batch_size=args.chunk_rows, batch_format="numpy"):
        records = [dec.decode(bytes(b)) for b in batch["record"]]
        for i, rec in enumerate(records):
            rec["row"] = store_rows + i  # global row numbers, assigned in input order
        store.add(store_rows, records)
        store_rows += len(records)
    return store_rows
