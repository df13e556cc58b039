"""The one validator of the scoring contract, used by the HTTP API and the batch job alike.

A message is read in two steps, the same for both paths:

1. **Shape** (errors): msgspec converts it into :class:`~service.contract.schemas.MessageIn` in lax
   mode (``strict=False``): ``text`` must be a string, ``id`` a string of at most 256 characters or an
   integer (kept as its decimal string: exports number their rows), no unknown fields; then the text
   passes :func:`check_text`. A message that fails is refused (HTTP 4xx, batch error record).
2. **Metadata** (warnings): every metadata field is read on its own, with the same lax msgspec rules
   (numeric strings and integral floats for counts, ``true``/``false``/``1``/``0`` in any case for
   booleans) and, for ``created_at``, the one timestamp reader
   (:class:`~service.contract.timestamps.TimestampParser`). A field that cannot be read is dropped
   (as if absent: it raises no priority) and its reason goes into the message's ``warnings``, which
   the result carries. Bad metadata never costs the score.

- HTTP: Litestar decodes the body into ``ScoreRequest`` with exactly step 1's conversion; the handler
  then calls :func:`check_request`, which does the rest and returns the :class:`Message` list.
- Batch: a row's cells, mapped to the message's field names, go through :func:`to_message`.

So both accept, warn about and refuse the same messages; ``tests/contract/test_validate.py`` feeds the
same hostile messages to both and compares. Problems are :class:`ContractError`: the field, a reason
that reads ``<kind>``, ``<kind>: <detail>`` or ``<kind>, got <value>`` (so a batch summary can
group reasons by :func:`error_kind`; warnings read the same way), and the HTTP status it deserves.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Mapping

import msgspec

from model.labels import CHANNELS
from service.contract.schemas import (
    MAX_COUNT,
    MAX_ID_CHARS,
    MAX_PRIOR_CONTACTS,
    Author,
    Message,
    MessageIn,
    ScoreRequest,
)
from service.contract.timestamps import TimestampParser

_AT = re.compile(r" - at `\$\.?(.*)`$")
#: what each field must be, as said to the user (the bounds come from the Structs' constants)
_RULES = {
    "text": "text must be a string",
    "id": f"id must be a string of at most {MAX_ID_CHARS} characters or an integer",
    "channel": "unknown channel",
    "author": "author must be an object with followers and verified",
    "author.followers": f"author followers must be an integer from 0 to {MAX_COUNT}",
    "author.verified": "verified must be true/false",
    "promoted": "promoted must be true/false",
    "prior_contacts": f"prior_contacts must be an integer from 0 to {MAX_PRIOR_CONTACTS}",
    "customer_key": f"customer_key must be a non-empty string of at most {MAX_ID_CHARS} characters",
}
#: the type each metadata field is read as (defined once, on the Structs)
_TYPES = {**{k: v for k, v in typing.get_type_hints(Message, include_extras=True).items()
             if k in ("channel", "promoted", "prior_contacts", "customer_key")},
          **{f"author.{k}": v for k, v in typing.get_type_hints(Author, include_extras=True).items()}}
DEFAULT_TIMESTAMPS = TimestampParser()


class ContractError(ValueError):
    """A message (or request) breaks the contract: ``key`` names the field, ``status`` is 400 or 413."""

    def __init__(self, key: str, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.key, self.reason, self.status = key, reason, status

    @property
    def kind(self) -> str:
        return error_kind(self.reason)


def error_kind(reason: str) -> str:
    """The part of a reason that names the kind of problem, without the row's own values."""
    return re.sub(r",? got .*$|: .*$", "", reason, flags=re.S).strip()


def check_text(text: str, max_chars: int) -> None:
    """The text rules msgspec cannot express: not blank, at most ``max_chars`` characters."""
    if not text.strip():
        raise ContractError("text", "text is empty or whitespace")
    if len(text) > max_chars:
        raise ContractError("text", f"text too long: {len(text)} characters, the limit is {max_chars}", 413)


def check_request(req: ScoreRequest, *, max_messages: int, max_text_chars: int,
                  timestamps: TimestampParser = DEFAULT_TIMESTAMPS) -> list[Message]:
    """A decoded HTTP request: 1..``max_messages`` messages, each text valid (keys name the message);
    returns the messages with their metadata read (:func:`read_metadata`)."""
    n = len(req.messages)
    if n == 0:
        raise ContractError("messages", "messages must hold at least one message")
    if n > max_messages:
        raise ContractError("messages", f"too many messages: {n} > limit {max_messages} per request; "
                            "split the batch", 413)
    for i, msg in enumerate(req.messages):
        try:
            check_text(msg.text, max_text_chars)
        except ContractError as exc:
            raise ContractError(f"messages[{i}].{exc.key}", f"messages[{i}].{exc.reason}", exc.status) from None
    return [read_metadata(m, timestamps) for m in req.messages]


def to_message(fields: Mapping[str, Any], *, max_text_chars: int,
               timestamps: TimestampParser = DEFAULT_TIMESTAMPS) -> Message:
    """A message from its fields (named as in :class:`MessageIn`), read exactly like an HTTP message."""
    try:
        msg = msgspec.convert(fields, MessageIn, strict=False)
    except msgspec.ValidationError as exc:
        raise _contract_error(str(exc), fields) from None
    check_text(msg.text, max_text_chars)
    return read_metadata(msg, timestamps)


def read_metadata(msg: MessageIn, timestamps: TimestampParser = DEFAULT_TIMESTAMPS) -> Message:
    """Step 2: every metadata field read on its own; an unreadable one is dropped with a warning."""
    warnings: list[str] = []
    channel = _field("channel", msg.channel, warnings)
    promoted = _field("promoted", msg.promoted, warnings)
    prior = _field("prior_contacts", msg.prior_contacts, warnings)
    customer_key = _field("customer_key", msg.customer_key, warnings)
    created = None
    if msg.created_at is not None:
        try:
            created = timestamps.parse(msg.created_at)
        except ValueError as exc:
            warnings.append(str(exc))
    return Message(text=msg.text, id=str(msg.id) if isinstance(msg.id, int) else msg.id, channel=channel,
                   author=_author(msg.author, warnings), promoted=bool(promoted),
                   prior_contacts=msgspec.UNSET if prior is None else prior,  # unset: the contact history counts
                   created_at=created, customer_key=customer_key, warnings=warnings)


def _author(value: Any, warnings: list[str]) -> Author | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        warnings.append(f"{_RULES['author']}, got {_short(value)}")
        return None
    warnings.extend(f"author has an unknown field, got {_short(k)}" for k in value if k not in ("followers", "verified"))
    followers = _field("author.followers", value.get("followers"), warnings)
    verified = _field("author.verified", value.get("verified"), warnings)
    return None if followers is None and verified is None else Author(followers=followers, verified=verified)


def _field(key: str, value: Any, warnings: list[str]) -> Any:
    """``value`` read as the field's type (lax), or None (absent) with the reason in ``warnings``."""
    if value is None:
        return None
    try:
        return msgspec.convert(value, _TYPES[key], strict=False)
    except msgspec.ValidationError:
        if key == "channel":
            warnings.append(f"{_RULES[key]}: {_short(value)} (allowed: {', '.join(CHANNELS)})")
        else:
            warnings.append(f"{_RULES[key]}, got {_short(value)}")
        return None


def _short(value: Any) -> str:
    """A value as shown in a reason: never more than 60 characters (a reason is not a copy of the input)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _contract_error(message: str, fields: Mapping[str, Any]) -> ContractError:
    """Turn msgspec's ``Expected `int` >= 0 - at `$.author.followers``` into the field and a reason."""
    at = _AT.search(message)
    key = at.group(1) if at else ""
    if not key:  # a whole-object problem (key "", as HTTP's is the message itself): a missing or unknown field
        missing = re.search(r"missing required field `(\w+)`", message)
        if missing:
            return ContractError("", f"missing {missing.group(1)}")
        unknown = re.search(r"unknown field `(.+?)`", message)
        return ContractError("", f"unknown field {unknown.group(1)!r}" if unknown
                             else f"not a message: {_AT.sub('', message)}")
    value = _value_at(fields, key)
    rule = _RULES.get(key)
    if rule is None:
        return ContractError(key, f"{key}: {_AT.sub('', message)}")
    if key == "text":
        return ContractError(key, f"{rule}, got {type(value).__name__}")  # never echo a text
    if key == "id" and isinstance(value, str):
        return ContractError(key, f"id too long: {len(value)} characters, the limit is {MAX_ID_CHARS}")
    return ContractError(key, f"{rule}, got {_short(value)}")


def _value_at(fields: Mapping[str, Any], key: str) -> Any:
    value: Any = fields
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value
