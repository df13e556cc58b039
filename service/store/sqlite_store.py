"""The default store: one SQLite file in WAL mode (several processes may write it at once).

Each count-and-record runs in one ``BEGIN IMMEDIATE`` transaction, so concurrent writers
(threads of one process or separate processes) are serialised and every contact sees exactly
the contacts committed before it. The HMAC secret is ``CT_STORE_SECRET`` when set, else a
random one generated into ``<file>.key`` (mode 0600) on first use; the store records the
secret's fingerprint and refuses to open with another secret, since old hashes would no
longer match and repeat contacts would silently stop being counted.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Sequence

from service.errors import UsageError
from service.store.base import DAY, Contact, FeedbackRecord, Hasher, StoreSettings, epoch, file_secret

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (
    customer TEXT NOT NULL,     -- HMAC-SHA256 of the customer key
    ref TEXT,                   -- HMAC of the message id / batch row, NULL when the message had none
    channel TEXT,
    at REAL NOT NULL            -- the message's time, epoch seconds
);
CREATE UNIQUE INDEX IF NOT EXISTS contacts_ref ON contacts (customer, ref, channel);
CREATE INDEX IF NOT EXISTS contacts_customer_at ON contacts (customer, at);
CREATE INDEX IF NOT EXISTS contacts_at ON contacts (at);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    labels TEXT NOT NULL,       -- JSON: the corrected heads only
    predicted TEXT,             -- JSON or NULL
    text TEXT,                  -- only when the caller asked for it to be kept
    language TEXT,
    channel TEXT,
    at REAL NOT NULL            -- when the feedback arrived
);
CREATE INDEX IF NOT EXISTS feedback_at ON feedback (at);
"""
PURGE_EVERY_S = 60.0


class SqliteStore:
    """Contact history and feedback in one SQLite file."""

    def __init__(self, settings: StoreSettings, *, need_secret: bool = True) -> None:
        self.settings, self.path = settings, Path(settings.url.removeprefix("sqlite:"))
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 30000")
            if self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise UsageError(f"history store {self.path}: cannot switch to WAL mode")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise UsageError(f"history store {self.path}: {exc}") from None
        self._hash = self._hasher() if need_secret else None
        self._last_purge = 0.0
        self.purge()

    def _hasher(self) -> Hasher:
        if self.settings.secret is not None:
            secret = self.settings.secret.encode("utf-8")
        else:
            secret = file_secret(self.path.with_name(self.path.name + ".key"))
        hasher = Hasher(secret)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('secret_fingerprint', ?)", (hasher.fingerprint(),))
                (stored,) = self._db.execute("SELECT value FROM meta WHERE name = 'secret_fingerprint'").fetchone()
            finally:
                self._db.execute("COMMIT")
        if stored != hasher.fingerprint():
            raise UsageError(f"history store {self.path} was written with a different secret: keep "
                             "CT_STORE_SECRET (or the .key file) unchanged, or start a new store")
        return hasher

    def count_and_record(self, contacts: Sequence[Contact], now: float | None = None) -> list[int]:
        if self._hash is None:
            raise RuntimeError("store opened without its secret")
        window = self.settings.window_days * DAY
        rows = [(self._hash.key(c.key), self._hash.ref(c.ref), c.channel, epoch(c.at)) for c in contacts]
        counts: list[int] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for customer, ref, channel, at in rows:
                    (n,) = self._db.execute(
                        "SELECT count(*) FROM contacts WHERE customer = ? AND at BETWEEN ? AND ? "
                        "AND (ref IS NULL OR ? IS NULL OR ref != ? OR channel IS NOT ?)",
                        (customer, at - window, at, ref, ref, channel)).fetchone()
                    counts.append(int(n))
                    self._db.execute("INSERT OR IGNORE INTO contacts VALUES (?, ?, ?, ?)", (customer, ref, channel, at))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._maybe_purge(now)
        return counts

    def add_feedback(self, record: FeedbackRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO feedback (message_id, labels, predicted, text, language, channel, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.message_id, json.dumps(record.labels),
                 None if record.predicted is None else json.dumps(record.predicted), record.text,
                 record.language, record.channel, record.at or time.time()))
        self._maybe_purge(None)

    def feedback(self) -> list[FeedbackRecord]:
        with self._lock:
            rows = self._db.execute("SELECT message_id, labels, predicted, text, language, channel, at "
                                    "FROM feedback ORDER BY at, id").fetchall()
        return [FeedbackRecord(message_id=m, labels=json.loads(lab), predicted=None if p is None else json.loads(p),
                               text=t, language=lang, channel=ch, at=at) for m, lab, p, t, lang, ch, at in rows]

    def purge(self, now: float | None = None) -> int:
        cutoff = (now if now is not None else time.time()) - self.settings.retention_days * DAY
        with self._lock:
            gone = self._db.execute("DELETE FROM contacts WHERE at < ?", (cutoff,)).rowcount
            gone += self._db.execute("DELETE FROM feedback WHERE at < ?", (cutoff,)).rowcount
        self._last_purge = time.monotonic()
        return gone

    def _maybe_purge(self, now: float | None) -> None:
        if now is not None or time.monotonic() - self._last_purge > PURGE_EVERY_S:
            self.purge(now)

    def close(self) -> None:
        with self._lock:
            self._db.close()
