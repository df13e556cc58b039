"""Column checks before any work: every column the user or a preset named must be in the file.

Only the head of the file is read: a CSV's header line, a Parquet file's schema (its footer), or
the first :data:`SAMPLE_ROWS` JSONL rows (at most :data:`SAMPLE_BYTES`). Nested fields are dotted
paths: JSON objects and Parquet structs list ``user``, ``user.followers_count`` …; CSV headers
are taken as they are (a header may itself contain a dot). A column that is missing is a
:class:`~service.errors.UsageError` (exit 2) listing the columns that are there and the closest
match. A file without any row (an empty CSV or JSONL) and stdin are not checked: there is nothing
to score, or nothing to read twice.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from service.batch.config import JobConfig
from service.errors import UsageError

SAMPLE_ROWS = 1000
SAMPLE_BYTES = 8 * 1024 * 1024
_SHOW = 40  # columns listed in the message


def _paths(obj: dict[str, Any], prefix: str = "", depth: int = 0) -> Iterator[str]:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, dict) and depth < 8:
            yield from _paths(value, f"{name}.", depth + 1)


def _csv_header(path: str) -> list[str] | None:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        try:
            return next(csv.reader(fh), None)
        except csv.Error as exc:
            raise UsageError(f"{path}: the CSV header cannot be parsed: {exc}") from None


def _jsonl_sample(path: str) -> list[str] | None:
    """Dotted paths of the first rows; None when no line there is a JSON object."""
    dec, seen, rows, size = msgspec.json.Decoder(), dict[str, None](), 0, 0
    with open(path, "rb") as fh:
        for line in fh:
            size += len(line)
            if line.strip():
                rows += 1
                try:
                    obj = dec.decode(line)
                except msgspec.DecodeError:
                    obj = None  # a bad line is that row's error record, not the file's
                if isinstance(obj, dict):
                    seen.update(dict.fromkeys(_paths(obj)))
            if rows >= SAMPLE_ROWS or size >= SAMPLE_BYTES:
                break
    return list(seen) if seen else None


def _parquet_schema(path: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def walk(fields: Iterable[Any], prefix: str) -> Iterator[str]:
        for f in fields:
            yield prefix + f.name
            if pa.types.is_struct(f.type):
                yield from walk(f.type, f"{prefix}{f.name}.")

    try:
        schema = pq.read_schema(path)  # the footer only
    except (OSError, pa.ArrowInvalid) as exc:
        raise UsageError(f"{path}: not a readable Parquet file: {exc}") from None
    return list(walk(schema, ""))


def file_columns(path: str, fmt: str) -> tuple[list[str] | None, str]:
    """The columns at the head of the file (None: no row to tell from) and what was read."""
    if fmt == "csv":
        return _csv_header(path), "header"
    if fmt == "parquet":
        return _parquet_schema(path), "schema"
    return _jsonl_sample(path), f"first {SAMPLE_ROWS} rows"


def _suggest(name: str, present: list[str]) -> str:
    folded = {p.lower(): p for p in present}
    match = folded.get(name.lower()) or next(iter(difflib.get_close_matches(name, present, n=1, cutoff=0.6)), None)
    if match is None:  # a dotted path whose leaf exists under another parent (user.followers vs author.followers)
        leaf = name.rsplit(".", 1)[-1]
        match = next((p for p in present if p.rsplit(".", 1)[-1].lower() == leaf.lower()), None)
    return f" (did you mean {match!r}?)" if match else ""


def check_columns(job: JobConfig) -> None:
    """:class:`UsageError` naming every named column the file does not have."""
    if job.input == "-" or job.no_column_check:
        return
    named = list(job.named)
    if job.columns.text not in {col for _, col in named}:  # the text is always needed, named or default
        named.insert(0, ("--text-col", job.columns.text))
    present, how = file_columns(job.input, job.input_format)
    if present is None:
        return
    have = set(present)
    missing: dict[str, str] = {}  # column → where it was first named
    for origin, col in named:
        if col not in have:
            missing.setdefault(col, origin)
    if not missing:
        return
    problems = "; ".join(f"{origin} {col!r} is not a column{_suggest(col, present)}" for col, origin in missing.items())
    shown = ", ".join(present[:_SHOW]) + (f", … ({len(present) - _SHOW} more)" if len(present) > _SHOW else "")
    later = " (a field that first appears later: --no-column-check)" if job.input_format == "jsonl" else ""
    raise UsageError(f"{problems}. Columns in {job.input} ({how}{later}): {shown}")
