"""The scoring contract as msgspec Structs: what a message may hold and what a result holds.

The HTTP API decodes request bodies into :class:`ScoreRequest` and the batch job converts file
rows into :class:`Message` with the same msgspec lax rules (:mod:`service.contract.validate`), so
the types and bounds below are the only definition of a valid message. :class:`Result` is the only
definition of an output record: the HTTP response, and the batch job's JSONL, CSV and Parquet
columns (:func:`service.batch.formats.output_schema`), are all built from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

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
    """One customer message as the priority rules see it: metadata checked, bad fields dropped and
    named in ``warnings`` (built from a :class:`MessageIn` by :mod:`service.contract.validate`)."""

    text: str
    id: Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)] | None = None
    channel: Channel | None = None
    author: Author | None = None
    promoted: bool = False
    #: absent (UNSET) = unknown: the service's contact history counts them (see ``customer_key``)
    prior_contacts: Annotated[int, msgspec.Meta(ge=0, le=MAX_PRIOR_CONTACTS)] | msgspec.UnsetType = msgspec.UNSET
    created_at: datetime | None = None
    #: any stable id of the customer; only its keyed hash is stored (contact history)
    customer_key: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)] | None = None
    warnings: list[str] = msgspec.field(default_factory=list)


_META = "optional metadata: a value that cannot be read is ignored and named in the result's warnings"


class MessageIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One incoming message as sent: the text and id are checked strictly (a bad one is an error);
    the metadata is taken as it comes and read field by field (see :class:`Message`)."""

    text: str
    id: Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)] | int | None = None
    channel: Annotated[Any, msgspec.Meta(description=f"one of {', '.join(CHANNELS)}; {_META}")] = None
    author: Annotated[Any, msgspec.Meta(description=f"{{followers: 0..{MAX_COUNT}, verified: bool}}; {_META}")] = None
    promoted: Annotated[Any, msgspec.Meta(description=f"bool; {_META}")] = None
    prior_contacts: Annotated[Any, msgspec.Meta(description=f"0..{MAX_PRIOR_CONTACTS}; {_META}")] = None
    created_at: Annotated[Any, msgspec.Meta(description="ISO 8601, RFC 2822, Twitter/X format, or Unix seconds/ms; "
                                                        + _META)] = None
    customer_key: Annotated[Any, msgspec.Meta(description=f"any stable id of the customer, 1..{MAX_ID_CHARS} "
                                                          f"characters; only its keyed hash is stored; {_META}")] = None


class ScoreRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/score``."""

    messages: list[MessageIn]


#: how the team answers a message (route.channel)
ROUTE_CHANNELS: tuple[str, ...] = ("dm", "callback", "email", "public_reply", "none")
RouteChannel = Literal[ROUTE_CHANNELS]  # type: ignore[valid-type]


class Route(msgspec.Struct):
    """Where a message goes (service/contract/routing.toml): queue, answer channel, deadline, why."""

    queue: str
    channel: RouteChannel
    respond_by: str | None  # RFC 3339 in the queue's time zone; None when the message's time is unknown
    reasons: list[str]


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
    #: metadata fields that could not be read and were left out of the priority (one reason each)
    warnings: list[str]
    #: kinds of personal data found in the text (never the values): card, email, iban, order_ref, phone
    exposes_personal_data: list[str] = []
    route: Route | None = None  # always set by triage; a default only so Result stays easy to extend


#: the keys of each score dict in a Result, in model-output order
SCORE_LABELS: dict[str, tuple[str, ...]] = {"severity_scores": SEVERITY_LABELS, "sentiment_scores": SENTIMENT_LABELS}


class ScoreResponse(msgspec.Struct):
    """Body of a successful ``POST /v1/score``."""

    model: str
    model_version: str
    results: list[Result]

