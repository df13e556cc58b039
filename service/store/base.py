"""What every store offers, the keyed hash, and the secret it is keyed with."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, Sequence

from service.errors import UsageError

DAY = 86_400.0
MIN_SECRET_CHARS = 16


@dataclass(frozen=True)
class Contact:
    """One message of a customer: raw key and message reference (hashed before storing), channel, time."""

    key: str
    channel: str | None
    at: datetime
    ref: str | None = None  # the message id (or the batch row): a retried message is not counted twice


@dataclass(frozen=True)
class FeedbackRecord:
    """An agent's correction of one scored message."""

    message_id: str
    labels: dict[str, Any]
    predicted: dict[str, Any] | None = None
    text: str | None = None
    language: str | None = None
    channel: str | None = None
    at: float = 0.0  # when it was received (epoch seconds)


@dataclass(frozen=True)
class StoreSettings:
    """Where the store lives and how long it remembers."""

    url: str  # a file path (SQLite) or redis://host:port/db
    secret: str | None = None  # HMAC key; None: generated next to a SQLite file (refused for Redis)
    window_days: float = 30.0  # earlier contacts counted within this window
    retention_days: float = 90.0  # contacts and feedback older than this are deleted

    def __post_init__(self) -> None:
        if not self.window_days > 0 or not self.retention_days > 0:
            raise UsageError("history window and retention must be positive numbers of days")
        if self.retention_days < self.window_days:
            raise UsageError(f"retention ({self.retention_days:g} days) is shorter than the history window "
                             f"({self.window_days:g} days): contacts would be deleted while still counted")
        if self.secret is not None and len(self.secret) < MIN_SECRET_CHARS:
            raise UsageError(f"the store secret must have at least {MIN_SECRET_CHARS} characters")

    @property
    def is_redis(self) -> bool:
        return self.url.startswith(("redis://", "rediss://", "unix://"))


class Hasher:
    """HMAC-SHA256 under the store's secret: the only form in which keys and ids are stored."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def key(self, customer_key: str) -> str:
        return hmac.new(self._secret, b"customer\0" + customer_key.encode("utf-8"), hashlib.sha256).hexdigest()

    def ref(self, ref: str | None) -> str | None:
        if ref is None:
            return None
        return hmac.new(self._secret, b"message\0" + ref.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def fingerprint(self) -> str:
        """Identifies the secret without revealing it (a store refuses a different secret)."""
        return hmac.new(self._secret, b"fingerprint", hashlib.sha256).hexdigest()[:16]


def file_secret(path: Path) -> bytes:
    """The secret kept in ``path`` (mode 0600), created on first use; several processes may race."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = path.read_text(encoding="ascii").strip()
        if len(text) < 2 * MIN_SECRET_CHARS:
            raise UsageError(f"store secret file {path} is empty or too short; delete it only together "
                             "with the store (the hashes depend on it)") from None
        return text.encode("ascii")
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return path.read_text(encoding="ascii").strip().encode("ascii")


def epoch(when: datetime) -> float:
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return aware.timestamp()


class Store(Protocol):
    """What the API and the batch job use."""

    def count_and_record(self, contacts: Sequence[Contact], now: float | None = None) -> list[int]:
        """Per contact, in order: earlier contacts of the same customer within the window (any
        channel; a contact recorded before with the same reference is not counted), then record it."""

    def add_feedback(self, record: FeedbackRecord) -> None:
        """Keep one correction."""

    def feedback(self) -> list[FeedbackRecord]:
        """Every correction still within retention, oldest first."""

    def purge(self, now: float | None = None) -> int:
        """Delete what is older than the retention; returns how many entries went."""

    def close(self) -> None:
        """Release connections."""


def open_store(settings: StoreSettings, *, need_secret: bool = True) -> Store:
    """The store ``settings.url`` names (a problem is a :class:`UsageError` with the reason).
    ``need_secret=False`` (feedback export) opens it without hashing anything."""
    if settings.is_redis:
        from service.store.redis_store import RedisStore

        return RedisStore(settings, need_secret=need_secret)
    from service.store.sqlite_store import SqliteStore

    return SqliteStore(settings, need_secret=need_secret)
