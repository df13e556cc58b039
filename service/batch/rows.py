"""Rows → messages → records, shared by the local and Ray engines.

A raw row (a JSONL line, or a CSV/Parquet row as a dict) is mapped onto the contract's field
names (:class:`~service.batch.config.Columns`; a column may be a dotted path into nested JSON
objects or Parquet structs, ``user.followers_count``; a missing cell, an empty cell or a NaN
means "absent") and then read by the contract's one validator,
:func:`service.contract.validate.to_message`, exactly as an HTTP message is. A row whose text
fails becomes an error record with the reason; bad metadata only adds warnings. The others are
scored together and become records holding the same values as the HTTP results
(:func:`service.contract.triage.build_results`). A row that fails ``Columns.where`` (e.g. twcs's
``inbound``) is a ``skipped`` record: kept in the part store, so row numbers and resuming stay
exact, and left out of the final file.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Sequence

import msgspec

from model.scorer import Scorer
from service.batch.config import Columns
from service.contract.priority import PriorityConfig
from service.contract.routing import RoutingConfig
from service.contract.schemas import Message
from service.contract.timestamps import TimestampParser
from service.contract.triage import build_results, bundle_thresholds
from service.contract.validate import DEFAULT_TIMESTAMPS, ContractError, to_message

_json = msgspec.json.Decoder()
_to_builtins = msgspec.to_builtins
#: message fields read from the columns of the same name in Columns (the author's are nested)
_FIELDS = ("id", "channel", "promoted", "prior_contacts", "created_at", "customer_key")
_AUTHOR = ("followers", "verified")


class RowError(ValueError):
    """A line that is not a JSON object; the message is the reason written to the output."""


def _absent(v: Any) -> bool:
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def cell(row: dict[str, Any], name: str) -> Any:
    """The value of column ``name``: a key of the row (CSV headers may hold dots), else a dotted path
    into nested objects (``user.followers_count``); None when absent or when ``name`` is ""."""
    if not name:
        return None
    if name in row:
        return row[name]
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def message_fields(row: dict[str, Any], cols: Columns) -> dict[str, Any]:
    """The row's cells under the contract's field names, absent cells left out."""
    text = cell(row, cols.text)
    if text is None or (isinstance(text, float) and math.isnan(text)):
        raise RowError(f"missing text (column {cols.text!r})")
    fields: dict[str, Any] = {"text": text}
    fields.update({name: v for name in _FIELDS if not _absent(v := cell(row, getattr(cols, name)))})
    if "channel" not in fields and cols.channel_value:
        fields["channel"] = cols.channel_value
    author = {name: v for name in _AUTHOR if not _absent(v := cell(row, getattr(cols, name)))}
    if author:
        fields["author"] = author
    return fields


def normal(value: Any) -> str:
    """A cell as compared by ``where``: booleans as true/false, everything as lower-case text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value).strip().lower()


def skip_reason(row: dict[str, Any], cols: Columns) -> str | None:
    """Why ``where`` skips the row (None: the row is scored)."""
    if cols.where is None:
        return None
    col, wanted = cols.where
    got = normal(cell(row, col))
    return None if got == normal(wanted) else f"{col} is not {wanted}"


def row_id(row: dict[str, Any], cols: Columns) -> str | None:
    """The id written on the row's record, valid or not (as text: the output column is a string)."""
    v = cell(row, cols.id)
    return None if _absent(v) else str(v)


def decode_line(line: bytes | str) -> dict[str, Any]:
    """One JSONL line → dict; RowError for undecodable or non-object lines."""
    try:
        obj = _json.decode(line)
    except msgspec.DecodeError as exc:
        raise RowError(f"undecodable line: {exc}") from exc
    if not isinstance(obj, dict):
        raise RowError(f"line is not a JSON object, got {type(obj).__name__}")
    return obj


def count_history(history: Any, good: Sequence[tuple[int, int, Message]], source: str) -> list[int | None]:
    """Earlier contacts of each message's customer (recording it): rows in arrival order. A row
    without ``created_at`` counts as arriving now; its reference is its id, else its row number in
    ``source``, so a resumed or repeated run does not count the same row twice."""
    from service.store import Contact

    now = datetime.now(UTC)
    keyed = [(k, row_no, m) for k, row_no, m in good if m.customer_key]
    counts = history.count_and_record([Contact(key=m.customer_key or "", channel=m.channel, at=m.created_at or now,
                                               ref=m.id or f"{source}:row:{row_no}") for _, row_no, m in keyed])
    out: list[int | None] = [None] * len(good)
    index = {k: i for i, (k, _, _) in enumerate(good)}
    for (k, _, _), n in zip(keyed, counts):
        out[index[k]] = n
    return out


def score_rows(scorer: Scorer, priority: PriorityConfig, rows: Sequence[tuple[int, Any]], cols: Columns,
               max_chars: int, timestamps: TimestampParser = DEFAULT_TIMESTAMPS, *,
               routing: RoutingConfig | None = None, history: Any = None, source: str = "") -> list[dict[str, Any]]:
    """Score (row_no, raw) pairs, raw being a dict or a JSONL line; one record per row, in order.
    ``history`` (a :class:`service.store.Store`) counts repeat contacts of rows with a customer_key."""
    out: list[dict[str, Any] | None] = [None] * len(rows)
    good: list[tuple[int, Message, dict[str, Any]]] = []
    for k, (row_no, raw) in enumerate(rows):
        rid, kept = None, dict.fromkeys(cols.keep)  # same keys on every record, parsable or not
        try:
            row = decode_line(raw) if isinstance(raw, (bytes, str)) else raw
            rid = row_id(row, cols)
            kept = {c: cell(row, c) for c in cols.keep}
            if (skip := skip_reason(row, cols)) is not None:
                out[k] = {"row": row_no, "id": rid, "skipped": skip}
                continue
            msg = to_message(message_fields(row, cols), max_text_chars=max_chars, timestamps=timestamps)
            good.append((k, msg, kept))
        except (RowError, ContractError) as exc:
            out[k] = {"row": row_no, "id": rid, "error": str(exc), **kept}
    if good:
        msgs = [m for _, m, _ in good]
        preds = scorer.predict([m.text for m in msgs])
        counts = count_history(history, [(k, rows[k][0], m) for k, m, _ in good], source) if history else None
        results = build_results(msgs, preds, bundle_thresholds(scorer.meta), priority, received_at=None,
                                routing=routing, history=counts)
        for (k, _msg, kept), res in zip(good, results):
            out[k] = {"row": rows[k][0], **_to_builtins(res), "error": None, **kept}
    return [r for r in out if r is not None]
