"""msgspec schemas of the scoring contract (HTTP and batch share them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Channel = Literal["twitter", "facebook", "instagram", "email", "chat", "sms", "review", "phone_transcript", "other"]
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
    """Scores for one message, in the order of the request."""

    id: str | None
    severity: str
    severity_scores: dict[str, float]
    complaint_probability: float
    is_complaint: bool
    private_followup: bool
    private_followup_probability: float
    sentiment: str
    sentiment_scores: dict[str, float]
    language: str
    priority: int
    priority_reasons: list[str]
    truncated: bool


class ScoreResponse(msgspec.Struct):
    """Body of a successful ``POST /v1/score``."""

    model: str
    model_version: str
    results: list[Result]


class ErrorBody(msgspec.Struct):
    """Every 4xx/5xx answer: HTTP status and a reason a human can act on."""

    status_code: int
    detail: str
    extra: list[dict[str, str]] | dict[str, str] | None = None
