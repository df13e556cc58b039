"""Row handling shared by the local and Ray batch engines: parse a raw row into a Message (or a
per-row error), score a chunk, and produce output records identical to the HTTP results."""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

import msgspec

from model.scorer import Scorer
from service.contract.priority import PriorityConfig
from service.contract.schemas import MAX_COUNT, MAX_ID_CHARS, MAX_PRIOR_CONTACTS, Author, Channel, Message
from service.contract.triage import build_results

_json = msgspec.json.Decoder()
_to_builtins = msgspec.to_builtins
CHANNELS: tuple[str, ...] = typing.get_args(Channel)


@dataclass(frozen=True)
class Columns:
    """Input column names for the text and the optional metadata."""

    text: str = "text"
    id: str = "id"
    channel: str = "channel"
    followers: str = "author_followers"
    verified: str = "verified"
    promoted: str = "promoted"
    prior_contacts: str = "prior_contacts"
    created_at: str = "created_at"
    keep: tuple[str, ...] = field(default_factory=tuple)


class RowError(ValueError):
    """This row cannot be scored; the message is the reason written to the output.

    Reasons read ``<kind>`` or ``<kind>: <detail>`` or ``<kind>, got <value>``, so the end-of-job
    summary can group them by kind (:func:`error_kind`)."""


def error_kind(reason: str) -> str:
    """The part of a reason that names the kind of problem, without the row's own values."""
    return re.sub(r",? got .*$|: .*$", "", reason, flags=re.S).strip()


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""


def _int(v: Any, name: str, limit: int) -> int | None:
    """An integer in [0, limit] (the HTTP contract's bounds); integral floats and numeric strings
    (CSV cells, pandas-written columns) are accepted."""
    if _missing(v):
        return None
    bad = RowError(f"{name} must be an integer from 0 to {limit}, got {v!r}")
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise bad
    try:
        f = float(v) if isinstance(v, str) else v
        n = int(f)
    except (ValueError, OverflowError) as exc:
        raise bad from exc
    if not 0 <= n <= limit or f != n:
        raise bad
    return n


def _bool(v: Any, name: str) -> bool | None:
    if _missing(v):
        return None
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise RowError(f"{name} must be true/false, got {v!r}")


def _when(v: Any) -> datetime | None:
    if _missing(v):
        return None
    if isinstance(v, datetime):
        return v
    try:
        return datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError as exc:
        raise RowError(f"created_at must be ISO 8601, got {v!r}") from exc


def to_message(row: dict[str, Any], cols: Columns, max_chars: int) -> Message:
    """Validate one input row; raises RowError with the reason."""
    text = row.get(cols.text)
    if text is None or (isinstance(text, float) and math.isnan(text)):
        raise RowError(f"missing text (column {cols.text!r})")
    if not isinstance(text, str):
        raise RowError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise RowError("text is empty or whitespace")
    if len(text) > max_chars:
        raise RowError(f"text too long: {len(text)} characters, the limit is {max_chars}")
    channel = row.get(cols.channel)
    channel = None if _missing(channel) else str(channel).strip().lower()
    if channel is not None and channel not in CHANNELS:
        raise RowError(f"unknown channel: {channel!r} (allowed: {', '.join(CHANNELS)})")
    rid = row_id(row, cols)
    if rid is not None and len(rid) > MAX_ID_CHARS:
        raise RowError(f"id too long: {len(rid)} characters, the limit is {MAX_ID_CHARS}")
    followers = _int(row.get(cols.followers), "author followers", MAX_COUNT)
    verified = _bool(row.get(cols.verified), "verified")
    author = Author(followers=followers, verified=verified) if followers is not None or verified is not None else None
    return Message(text=text, id=rid, channel=channel, author=author,  # type: ignore[arg-type]
                   promoted=bool(_bool(row.get(cols.promoted), "promoted")),
                   prior_contacts=_int(row.get(cols.prior_contacts), "prior_contacts", MAX_PRIOR_CONTACTS) or 0,
                   created_at=_when(row.get(cols.created_at)))


def row_id(row: dict[str, Any], cols: Columns) -> str | None:
    v = row.get(cols.id)
    return None if _missing(v) else str(v)


def decode_line(line: bytes) -> dict[str, Any]:
    """One JSONL line → dict; RowError for undecodable or non-object lines."""
    try:
        obj = _json.decode(line)
    except msgspec.DecodeError as exc:
        raise RowError(f"undecodable line: {exc}") from exc
    if not isinstance(obj, dict):
        raise RowError(f"line is not a JSON object, got {type(obj).__name__}")
    return obj


def error_record(row_no: int, rid: str | None, reason: str, kept: dict[str, Any]) -> dict[str, Any]:
    return {"row": row_no, "id": rid, "error": reason, **kept}


def score_rows(scorer: Scorer, priority: PriorityConfig, rows: Sequence[tuple[int, Any]], cols: Columns,
               max_chars: int) -> list[dict[str, Any]]:
    """Score (row_no, raw) pairs, raw being a dict or a JSONL line; one record per row, in order."""
    out: list[dict[str, Any] | None] = [None] * len(rows)
    good: list[tuple[int, Message, dict[str, Any]]] = []
    for k, (row_no, raw) in enumerate(rows):
        rid, kept = None, dict.fromkeys(cols.keep)  # same keys on every record, parsable or not
        try:
            row = decode_line(raw) if isinstance(raw, (bytes, str)) else raw
            rid = row_id(row, cols)
            kept = {c: row.get(c) for c in cols.keep}
            good.append((k, to_message(row, cols, max_chars), kept))
        except RowError as exc:
            out[k] = error_record(row_no, rid, str(exc), kept)
    if good:
        msgs = [m for _, m, _ in good]
        preds = scorer.predict([m.text for m in msgs])
        results = build_results(msgs, preds, scorer.meta.followup_threshold, priority, received_at=None)
        for (k, _msg, kept), res in zip(good, results):
            out[k] = {"row": rows[k][0], **_to_builtins(res), "error": None, **kept}
    return [r for r in out if r is not None]
