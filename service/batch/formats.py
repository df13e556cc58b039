"""Streaming readers and writers for the batch job (JSONL, CSV, Parquet, stdin).

The output columns are derived once, by :func:`output_schema`, from the contract's
:class:`~service.contract.schemas.Result` (the Struct the HTTP API returns): Parquet uses that
schema as it is, CSV its flattened column names (``severity_scores.high`` …).
"""

from __future__ import annotations

import csv
import io
import sys
import typing
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import msgspec

from service.contract.schemas import SCORE_LABELS, Result
from service.errors import TriageError


class InputError(TriageError):
    """The input cannot be read as the format it claims (a fatal problem, not a bad row)."""


_encode = msgspec.json.Encoder().encode
csv.field_size_limit(64 * 1024 * 1024)


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


def output_schema(keep: Sequence[str]):  # type: ignore[no-untyped-def]
    """The Arrow schema of an output record: ``row``, ``id``, ``error``, every :class:`Result` field
    in contract order (score dicts as structs of their labels), then the ``--keep`` columns as strings."""
    import pyarrow as pa

    scalar = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}

    def arrow(name: str, hint: Any) -> Any:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if args and typing.get_origin(args[0]) is not None and len(typing.get_args(hint)) == 2:
            hint, args = args[0], list(typing.get_args(args[0]))  # ``dict[str, float] | None`` → the dict
        origin = typing.get_origin(hint)
        inner = args[0] if args else hint
        if isinstance(inner, type) and issubclass(inner, msgspec.Struct):  # e.g. route: a struct column
            sub = typing.get_type_hints(inner)
            return pa.struct([(f, arrow(f, sub[f])) for f in inner.__struct_fields__])
        if origin is typing.Literal or typing.get_origin(inner) is typing.Literal:
            return pa.string()
        if origin is dict:
            return pa.struct([(label, scalar[args[1]]) for label in SCORE_LABELS[name]])
        if origin is list:
            return pa.list_(scalar[args[0]])
        return scalar[args[0] if args else hint]  # ``str | None`` → string

    hints = typing.get_type_hints(Result)
    head = [("row", pa.int64()), ("id", arrow("id", hints["id"])), ("error", pa.string())]
    body = [(name, arrow(name, hints[name])) for name in Result.__struct_fields__ if name != "id"]
    return pa.schema(head + body + [(k, pa.string()) for k in keep])


def flat_columns(keep: Sequence[str]) -> list[str]:
    """CSV header: :func:`output_schema` with struct fields as dotted columns."""
    import pyarrow as pa

    cols: list[str] = []
    for f in output_schema(keep):
        cols += [f"{f.name}.{sub.name}" for sub in f.type] if pa.types.is_struct(f.type) else [f.name]
    return cols


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    """One record as CSV cells: score dicts spread over dotted columns, floats exact, reasons ' | '-joined."""
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if isinstance(v, dict) and k == "route":  # strings and a list of reasons, not scores
            out.update({f"{k}.{sub}": " | ".join(x) if isinstance(x, list) else x for sub, x in v.items()})
        elif isinstance(v, dict):
            out.update({f"{k}.{sub}": repr(x) for sub, x in v.items()})
        elif isinstance(v, list):
            out[k] = " | ".join(v)
        else:
            out[k] = repr(v) if isinstance(v, float) else v
    return out


class FinalWriter:
    """Writes the final output file (to a temporary name; the caller renames it)."""

    def __init__(self, path: Path, fmt: str, keep: Sequence[str]) -> None:
        self.fmt, self.keep = fmt, list(keep)
        self._pq: Any = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self.schema = output_schema(keep)
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
                if rec.get(k) is not None and not isinstance(rec[k], str):  # a nested --keep value as JSON
                    rec[k] = _encode(rec[k]).decode() if isinstance(rec[k], (dict, list)) else str(rec[k])
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
