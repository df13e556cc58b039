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

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import msgspec

        from service.batch_rows import score_rows

        if ROW_COL in batch:  # JSONL: raw lines, parsed here so bad lines become error records
            raws: list[Any] = [line.encode("utf-8") for line in batch[ROW_COL]]
        else:
            keys = list(batch)
            raws = [dict(zip(keys, vals)) for vals in zip(*(batch[k] for k in keys))]
            raws = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in raws]
        records = score_rows(self.scorer, self.priority, list(enumerate(raws)), self.cols, self.max_chars)
        return {"record": [msgspec.json.encode(r) for r in records]}


def _read(path: str, fmt: str) -> Any:
    import ray.data

    if fmt == "jsonl":
        ds = ray.data.read_text(path)
        return ds.filter(lambda r: bool(r["text"].strip())).rename_columns({"text": ROW_COL})
    if fmt == "csv":
        import pyarrow.csv as pacsv

        with open(path, encoding="utf-8", errors="replace") as fh:
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
        RayScorer, batch_size=args.chunk_rows, batch_format="numpy", concurrency=args.actors,
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
