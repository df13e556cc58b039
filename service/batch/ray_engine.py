"""``--engine ray``: the same row parser and scorer, scaled out with Ray Data.

plan (driver) → read tasks (Ray Data) → ``map_batches(RayScorer)`` (one ONNX session per actor,
ORT threads = CPUs per actor) → ordered stream back to the driver → the same durable parts and
final writer as the local engine, so both engines produce the same file.

The driver plans the read: one pass over a JSONL or CSV file finds the byte offset where every
``--read-rows`` block of rows starts (record boundaries, so a quoted newline in a CSV cell never
splits a row), and a Parquet file's footer gives its row groups. Every read task therefore knows
where its rows start, which makes Ray runs resumable exactly like local ones: a re-run plans from
the first row not yet in ``OUT.partial`` and never reads or scores the rows already done. Reads
are streamed in parallel; no task holds more than one block of rows.

Connects to ``RAY_ADDRESS`` when set, else starts a local Ray instance.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from typing import Any

from service.batch.config import JobConfig
from service.batch.formats import InputError

ROW_COL = "__raw"  # JSONL lines and CSV rows travel as opaque bytes, parsed by the scorer


class RayScorer:
    """Ray Data callable class: loads the bundle once per actor."""

    def __init__(self, job: JobConfig) -> None:
        from model.scorer import Scorer
        from service.contract.priority import load_config

        self.scorer = Scorer.load(job.bundle, intra_op_threads=job.cpus_per_actor, batch_size=job.batch_size,
                             complaint_prior=job.complaint_prior)
        from service.contract.routing import load_routing

        self.priority = load_config(job.priority_config, timezone_name=job.timezone)
        self.routing = load_routing(job.routing_config)
        self.job = job

    def __call__(self, batch: Any) -> dict[str, Any]:
        import msgspec

        from service.batch.rows import score_rows

        if ROW_COL in batch.column_names:  # JSONL line / CSV row as bytes: parsed per row, so a bad
            raws: list[Any] = batch.column(ROW_COL).to_pylist()  # one is one error record
        else:  # Parquet: Arrow rows → Python exactly as the local reader makes them
            raws = batch.to_pylist()
        records = score_rows(self.scorer, self.priority, list(enumerate(raws)), self.job.columns,
                             self.job.max_text_chars, self.job.timestamps, routing=self.routing)
        return {"record": [msgspec.json.encode(r) for r in records]}


# --------------------------------------------------------------------------------------------- planning


def _plan_lines(path: str, skip: int, block: int) -> list[dict[str, Any]]:
    """JSONL: byte ranges of ``block`` rows each, from the first row after ``skip``. Rows are the
    non-blank lines, counted exactly as :func:`service.batch.formats.read_rows` counts them."""
    plan: list[dict[str, Any]] = []
    rows = pos = 0
    start = None
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                if rows == skip or (rows > skip and (rows - skip) % block == 0):
                    if start is not None:
                        plan[-1]["end"] = pos
                    start = pos
                    plan.append({"path": path, "fmt": "jsonl", "start": pos, "end": -1, "first_row": rows})
                rows += 1
            pos += len(line)
    if plan:
        plan[-1]["end"] = pos
    return plan


def _decoded_lines(fh: Any, counter: list[int]) -> Iterator[str]:
    """Lines of a binary file as the csv module sees them with ``newline=""`` (\\n, \\r\\n or a bare
    \\r end a line), decoded like the local reader; ``counter[0]`` counts the bytes handed out."""
    for raw in fh:
        for piece in raw.splitlines(keepends=True):
            counter[0] += len(piece)
            yield piece.decode("utf-8", errors="replace")


def _plan_csv(path: str, skip: int, block: int) -> list[dict[str, Any]]:
    """CSV: byte ranges on record boundaries. The csv module pulls exactly one record's lines at a
    time, so the bytes handed to it so far mark where each record ends. Rows are counted as
    ``csv.DictReader`` counts them (blank lines are not rows)."""
    plan: list[dict[str, Any]] = []
    fed, start = [0], 0
    with open(path, "rb") as fh:
        records = csv.reader(_decoded_lines(fh, fed))
        try:
            header = next(records, None)
            if not header:
                return plan
            if header[0].startswith("\ufeff"):
                header[0] = header[0][1:]
            row, start = 0, fed[0]
            for rec in records:
                if rec:
                    if row == skip or (row > skip and (row - skip) % block == 0):
                        if plan:
                            plan[-1]["end"] = start
                        plan.append({"path": path, "fmt": "csv", "start": start, "end": -1, "first_row": row,
                                     "header": header})
                    row += 1
                start = fed[0]
        except csv.Error as exc:
            raise InputError(f"{path}: CSV cannot be parsed near byte {start}: {exc}") from exc
    if plan:
        plan[-1]["end"] = fed[0]
    return plan


def _plan_parquet(path: str, skip: int) -> list[dict[str, Any]]:
    """Parquet: one task per row group still (partly) to do."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    plan, first = [], 0
    for i in range(meta.num_row_groups):
        n = meta.row_group(i).num_rows
        if first + n > skip and n:
            offset = max(0, skip - first)
            plan.append({"path": path, "fmt": "parquet", "start": i, "end": -1, "first_row": first + offset,
                         "offset": offset})
        first += n
    return plan


def plan_read(path: str, fmt: str, skip: int, block: int) -> list[dict[str, Any]]:
    """Read tasks for the rows after the first ``skip``, in input order."""
    if fmt == "jsonl":
        return _plan_lines(path, skip, block)
    if fmt == "csv":
        return _plan_csv(path, skip, block)
    return _plan_parquet(path, skip)


# --------------------------------------------------------------------------------------------- reading


def _read_text_range(item: dict[str, Any]) -> list[dict[str, bytes]]:
    """One JSONL or CSV block → its rows as opaque bytes (JSON lines / JSON-encoded CSV dicts)."""
    import msgspec

    with open(item["path"], "rb") as fh:
        fh.seek(item["start"])
        data = fh.read(item["end"] - item["start"])
    if item["fmt"] == "jsonl":
        return [{ROW_COL: line} for line in io.BytesIO(data) if line.strip()]
    # same as the local reader: csv.DictReader over utf-8 with errors="replace", extra fields dropped
    text = data.decode("utf-8", errors="replace")
    out = []
    for row in csv.DictReader(io.StringIO(text, newline=""), fieldnames=item["header"]):
        row.pop(None, None)  # type: ignore[call-overload]
        out.append({ROW_COL: msgspec.json.encode(row)})
    return out


def _read_row_groups(items: Any) -> Any:
    """A batch of Parquet plan items → their rows as one Arrow table (types as in the file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for item in items.to_pylist():
        table = pq.ParquetFile(item["path"]).read_row_group(item["start"])
        tables.append(table.slice(item["offset"]))
    return pa.concat_tables(tables)


def _dataset(plan: list[dict[str, Any]], fmt: str) -> Any:
    import ray.data

    items = ray.data.from_items(plan, override_num_blocks=len(plan))
    if fmt == "parquet":
        return items.map_batches(_read_row_groups, batch_size=1, batch_format="pyarrow")
    return items.flat_map(_read_text_range)


def run_ray(job: JobConfig, store: Any) -> int:
    """Run on Ray from the first row not yet done; results stream back in input order into the
    part store."""
    import dataclasses

    import msgspec

    done = store.done_rows()
    plan = plan_read(os.path.abspath(job.input), job.input_format, done, job.read_rows)
    if not plan:
        return done
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # rows come back in input order
    ctx.enable_progress_bars = not job.quiet
    actor_job = dataclasses.replace(job, bundle=os.path.abspath(job.bundle))  # actors may run elsewhere
    scored = _dataset(plan, job.input_format).map_batches(
        RayScorer, batch_size=job.chunk_rows, batch_format="pyarrow", concurrency=job.actors,
        num_cpus=job.cpus_per_actor, fn_constructor_kwargs={"job": actor_job})
    dec = msgspec.json.Decoder()
    row = done
    for batch in scored.iter_batches(batch_size=job.chunk_rows, batch_format="numpy"):
        records = [dec.decode(bytes(b)) for b in batch["record"]]
        for i, rec in enumerate(records):
            rec["row"] = row + i  # global row numbers, assigned in input order
        store.add(row, records)
        row += len(records)
    return row
