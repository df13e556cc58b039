"""The scoring contract as msgspec Structs: what a message may hold and what a result holds.

The HTTP API decodes request bodies into :class:`ScoreRequest` and the batch job converts file
rows into :class:`Message` with the same msgspec lax rules (:mod:`service.contract.validate`), so
the types and bounds below are the only definition of a valid message. :class:`Result` is the only
definition of an output record: the HTTP response, and the batch job's JSONL, CSV and Parquet
columns (:func:`service.batch.formats.output_schema`), are all built from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from model.labels import CHANNELS, SENTIMENT_LABELS, SEVERITY_LABELS

Channel = Literal[CHANNELS]  # type: ignore[valid-type]  # the nine channels, defined once in model.labels
MAX_COUNT = 1_000_000_000  # followers
MAX_PRIOR_CONTACTS = 10_000
MAX_ID_CHARS = 256
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]


class Author(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Who wrote the message (optional metadata)."""

    followers: Count | None = None
    verified: bool | None = None


class Message(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One incoming customer message."""

    text: str
    id: Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)] | None = None
    channel: Channel | None = None
    author: Author | None = None
    promoted: bool = False
    prior_contacts: Annotated[int, msgspec.Meta(ge=0, le=MAX_PRIOR_CONTACTS)] = 0
    created_at: datetime | None = None


class ScoreRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/score``."""

    messages: list[Message]


class Result(msgspec.Struct):
    """Scores for one message, in the order of the request. A head the bundle did not train
    (``GET /info`` → ``untrained_heads``, with the reason) has its fields set to null."""

    id: str | None
    severity: str | None
    severity_scores: dict[str, float] | None
    complaint_probability: float | None
    is_complaint: bool | None
    private_followup: bool | None
    private_followup_probability: float | None
    sentiment: str | None
    sentiment_scores: dict[str, float] | None
    language: str
    priority: int
    priority_reasons: list[str]
    truncated: bool


#: the keys of each score dict in a Result, in model-output order
SCORE_LABELS: dict[str, tuple[str, ...]] = {"severity_scores": SEVERITY_LABELS, "sentiment_scores": SENTIMENT_LABELS}


class ScoreResponse(msgspec.Struct):
    """Body of a successful ``POST /v1/score``."""

    model: str
    model_version: str
    results: list[Result]

