"""The one validator of the scoring contract, used by the HTTP API and the batch job alike.

A message is valid when msgspec can convert it into :class:`~service.contract.schemas.Message` in
lax mode (``strict=False``: numeric strings and integral floats for counts, ``true``/``false``/
``1``/``0`` in any case for booleans, RFC 3339 times) and its text passes :func:`check_text`.

- HTTP: Litestar decodes the body with exactly this conversion (``msgspec.convert(..., strict=False)``
  on the handler's ``ScoreRequest``); the handler then calls :func:`check_request`.
- Batch: a row's cells, mapped to the message's field names, go through :func:`to_message`.

So both accept and refuse the same messages; ``tests/contract/test_validate.py`` feeds the same
hostile messages to both and compares. Problems are :class:`ContractError`: the field, a reason
that reads ``<kind>``, ``<kind>: <detail>`` or ``<kind>, got <value>`` (so a batch summary can
group reasons by :func:`error_kind`), and the HTTP status it deserves.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import msgspec

from model.labels import CHANNELS
from service.contract.schemas import MAX_COUNT, MAX_ID_CHARS, MAX_PRIOR_CONTACTS, Message, ScoreRequest

_AT = re.compile(r" - at `\$\.?(.*)`$")
#: what each field must be, as said to the user (the bounds come from the Structs' constants)
_RULES = {
    "text": "text must be a string",
    "id": f"id must be a string of at most {MAX_ID_CHARS} characters",
    "channel": "unknown channel",
    "author": "author must be an object with followers and verified",
    "author.followers": f"author followers must be an integer from 0 to {MAX_COUNT}",
    "author.verified": "verified must be true/false",
    "promoted": "promoted must be true/false",
    "prior_contacts": f"prior_contacts must be an integer from 0 to {MAX_PRIOR_CONTACTS}",
    "created_at": "created_at must be ISO 8601",
    "customer_key": f"customer_key must be a non-empty string of at most {MAX_ID_CHARS} characters",
}


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


def check_request(req: ScoreRequest, *, max_messages: int, max_text_chars: int) -> None:
    """A decoded HTTP request: 1..``max_messages`` messages, each text valid (keys name the message)."""
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


def to_message(fields: Mapping[str, Any], *, max_text_chars: int) -> Message:
    """A message from its fields (named as in :class:`Message`), validated like an HTTP message."""
    try:
        msg = msgspec.convert(fields, Message, strict=False)
    except msgspec.ValidationError as exc:
        raise _contract_error(str(exc), fields) from None
    check_text(msg.text, max_text_chars)
    return msg


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
    if key == "channel":
        return ContractError(key, f"{rule}: {value!r} (allowed: {', '.join(CHANNELS)})")
    if key == "id" and isinstance(value, str):
        return ContractError(key, f"id too long: {len(value)} characters, the limit is {MAX_ID_CHARS}")
    return ContractError(key, f"{rule}, got {value!r}")


def _value_at(fields: Mapping[str, Any], key: str) -> Any:
    value: Any = fields
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value
