"""Streaming readers and writers for the batch scorer (JSONL, CSV, Parquet, stdin)."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import msgspec

from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS

FORMATS = ("jsonl", "csv", "parquet")


class InputError(OSError):
    """The input cannot be read as the format it claims (a fatal problem, not a bad row)."""

_encode = msgspec.json.Encoder().encode
csv.field_size_limit(64 * 1024 * 1024)


def detect_format(path: str, given: str | None) -> str:
    """Format from --format, else from the file extension ('-' means JSONL on stdin/stdout)."""
    if given:
        return given
    if path == "-":
        return "jsonl"
    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl", "csv": "csv", "parquet": "parquet", "pq": "parquet"}
    if suffix not in fmt:
        raise ValueError(f"cannot tell the format of {path!r} from its extension; pass --input-format/--output-format")
    return fmt[suffix]


def count_rows(path: str, fmt: str) -> int | None:
    """Row count for the progress bar's ETA (None for stdin)."""
    if path == "-":
        return None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            n += bool(line.strip())
    return n - 1 if fmt == "csv" and n else n


def _jsonl(fh: BinaryIO, skip: int) -> Iterator[bytes]:
    seen = 0
    for line in fh:
        if not line.strip():
            continue  # blank lines are not rows
        seen += 1
        if seen > skip:
            yield line


def _csv(path: str, skip: int) -> Iterator[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:  # -sig: Excel writes a BOM
        i = 0
        try:
            for i, row in enumerate(csv.DictReader(fh)):  # noqa: B007 (i is reported on error)
                if i >= skip:
                    row.pop(None, None)  # extra fields of a malformed line
                    yield row
        except csv.Error as exc:  # e.g. a cell over the field size limit: the reader cannot go on
            raise InputError(f"{path}: CSV cannot be parsed after row {i}: {exc}") from exc


def _parquet(path: str, skip: int, batch: int) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    seen = 0
    for rb in pq.ParquetFile(path).iter_batches(batch_size=batch):
        if seen + rb.num_rows <= skip:
            seen += rb.num_rows
            continue
        start = max(0, skip - seen)
        seen += rb.num_rows
        yield from rb.slice(start).to_pylist()


def read_rows(path: str, fmt: str, skip: int = 0, batch: int = 4096) -> Iterator[Any]:
    """Yield raw rows after the first ``skip``: JSONL lines as bytes (parsed per row, so one
    bad line is one error record), CSV and Parquet rows as dicts."""
    if fmt == "jsonl":
        if path == "-":
            yield from _jsonl(sys.stdin.buffer, skip)
        else:
            with open(path, "rb") as fh:
                yield from _jsonl(fh, skip)
    elif fmt == "csv":
        yield from _csv(path, skip)
    elif fmt == "parquet":
        yield from _parquet(path, skip, batch)
    else:
        raise ValueError(f"unknown input format {fmt!r}")


def encode_records(records: Sequence[dict[str, Any]]) -> bytes:
    """Records as JSON lines (exact float round-trip)."""
    return b"".join(_encode(r) + b"\n" for r in records)


def flat_columns(keep: Sequence[str]) -> list[str]:
    """CSV header: nested score dicts become dotted columns, reasons a ' | '-joined string."""
    return (["row", "id", "error", "severity"] + [f"severity_scores.{k}" for k in SEVERITY_LABELS]
            + ["complaint_probability", "is_complaint", "private_followup", "private_followup_probability",
               "sentiment"] + [f"sentiment_scores.{k}" for k in SENTIMENT_LABELS]
            + ["language", "priority", "priority_reasons", "truncated"] + list(keep))


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if not isinstance(v, (dict, list))}
    for name in ("severity_scores", "sentiment_scores"):
        for k, v in (rec.get(name) or {}).items():
            out[f"{name}.{k}"] = repr(v)
    for k in ("complaint_probability", "private_followup_probability"):
        if rec.get(k) is not None:
            out[k] = repr(rec[k])
    if rec.get("priority_reasons") is not None:
        out["priority_reasons"] = " | ".join(rec["priority_reasons"])
    return out


def arrow_schema(keep: Sequence[str]):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    f64 = pa.float64()
    return pa.schema([
        ("row", pa.int64()), ("id", pa.string()), ("error", pa.string()), ("severity", pa.string()),
        ("severity_scores", pa.struct([(k, f64) for k in SEVERITY_LABELS])),
        ("complaint_probability", f64), ("is_complaint", pa.bool_()), ("private_followup", pa.bool_()),
        ("private_followup_probability", f64), ("sentiment", pa.string()),
        ("sentiment_scores", pa.struct([(k, f64) for k in SENTIMENT_LABELS])),
        ("language", pa.string()), ("priority", pa.int64()), ("priority_reasons", pa.list_(pa.string())),
        ("truncated", pa.bool_()), *[(k, pa.string()) for k in keep]])


class FinalWriter:
    """Writes the final output file (to a temporary name; the caller renames it)."""

    def __init__(self, path: Path, fmt: str, keep: Sequence[str]) -> None:
        self.fmt, self.keep = fmt, list(keep)
        self._pq: Any = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self.schema = arrow_schema(keep)
            self._pq = pq.ParquetWriter(str(path), self.schema, compression="zstd")
        else:
            self._fh = open(path, "wb") if fmt == "jsonl" else open(path, "w", newline="", encoding="utf-8")
            if fmt == "csv":
                self._csv = csv.DictWriter(self._fh, fieldnames=flat_columns(keep), extrasaction="ignore")
                self._csv.writeheader()

    def write_jsonl_bytes(self, data: bytes) -> None:
        """Append a part (JSON lines) in the output format."""
        if self.fmt == "jsonl":
            self._fh.write(data)
            return
        records = [msgspec.json.decode(line) for line in io.BytesIO(data) if line.strip()]
        for rec in records:
            for k in self.keep:
                if rec.get(k) is not None and not isinstance(rec[k], str):
                    rec[k] = str(rec[k])
        if self.fmt == "csv":
            self._csv.writerows(flatten(r) for r in records)
        else:
            import pyarrow as pa

            self._pq.write_table(pa.Table.from_pylist(records, schema=self.schema))

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        else:
            self._fh.close()
