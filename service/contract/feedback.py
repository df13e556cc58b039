"""The agent-feedback contract: ``POST /v1/feedback`` bodies and how they become training rows.

An agent corrects one scored message: its id, the corrected labels (any of the three heads),
optionally what the model predicted (then a head that equals it is a confirmation, not a
correction) and, only if the caller wants it kept, the text. Stored rows become training rows in
the corpus JSONL format (:func:`training_rows`), which ``complaint-triage train --data`` reads
as it is.
"""

from __future__ import annotations

from typing import Annotated, Any, Iterable, Literal

import msgspec

from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS
from service.contract.schemas import MAX_ID_CHARS, Channel
from service.contract.validate import ContractError, check_text

HEADS = ("severity", "private_followup", "sentiment")


class Labels(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Labels of the three heads; any may be left out (not null: a head is labelled or absent)."""

    severity: Literal[SEVERITY_LABELS] | msgspec.UnsetType = msgspec.UNSET  # type: ignore[valid-type]
    private_followup: bool | msgspec.UnsetType = msgspec.UNSET
    sentiment: Literal[SENTIMENT_LABELS] | msgspec.UnsetType = msgspec.UNSET  # type: ignore[valid-type]


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/feedback``."""

    message_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
    labels: Labels
    predicted: Labels | None = None
    text: str | None = None  # kept only when sent: it makes the row usable for training
    channel: Channel | None = None
    language: Annotated[str, msgspec.Meta(pattern="^[a-z]{2,3}$")] | None = None


class FeedbackResponse(msgspec.Struct):
    """Body of a successful ``POST /v1/feedback``."""

    message_id: str
    corrected: list[str]  # heads whose label differs from the prediction (all given heads without one)
    confirmed: list[str]  # heads whose label equals the prediction sent
    text_kept: bool


def given(labels: Labels) -> dict[str, Any]:
    """The heads that carry a label."""
    return {h: getattr(labels, h) for h in HEADS if getattr(labels, h) is not msgspec.UNSET}


def check_feedback(req: FeedbackRequest, *, max_text_chars: int) -> tuple[list[str], list[str]]:
    """The one check msgspec cannot do (at least one label, a non-blank text); returns the
    corrected and the confirmed heads."""
    labels = given(req.labels)
    if not labels:
        raise ContractError("labels", "labels must hold at least one of severity, private_followup, sentiment")
    if req.text is not None:
        check_text(req.text, max_text_chars)
    predicted = given(req.predicted) if req.predicted else {}
    confirmed = [h for h, v in labels.items() if predicted.get(h) == v]
    return [h for h in labels if h not in confirmed], confirmed


def training_rows(records: Iterable[Any]) -> tuple[list[dict[str, Any]], int]:
    """Stored feedback (oldest first) → corpus rows, one per message id: later feedback wins per
    head, the latest text sent is used. Rows without a text cannot be trained on and are left out;
    returns the rows and how many message ids were left out for that reason."""
    merged: dict[str, dict[str, Any]] = {}
    for rec in records:
        row = merged.setdefault(rec.message_id, {"id": f"feedback-{rec.message_id}", "text": None, "lang": None,
                                                 "channel": None, **dict.fromkeys(HEADS)})
        row.update({h: v for h, v in rec.labels.items() if h in HEADS and v is not None})
        if rec.text is not None:
            row["text"] = rec.text
        row["lang"] = rec.language or row["lang"]
        row["channel"] = rec.channel or row["channel"]
    rows = [r for r in merged.values() if r["text"]]
    for r in rows:
        r["lang"] = r["lang"] or "und"
    return rows, len(merged) - len(rows)
