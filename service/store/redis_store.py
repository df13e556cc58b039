"""The store for several replicas: Redis (``CT_STORE=redis://host:port/db``).

Per customer one sorted set ``ct:c:<hmac>`` (member ``<message-ref hmac>:<channel>``, score =
the message's time); count-and-record is one Lua script, so replicas writing at once are
serialised by Redis and every contact sees exactly the contacts recorded before it. Keys expire
after the retention, and entries older than the retention are trimmed on every write. Feedback
is one sorted set ``ct:feedback`` scored by arrival time. A shared ``CT_STORE_SECRET`` is
required: each replica generating its own would hash the same customer differently.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Sequence

from service.errors import UsageError
from service.store.base import DAY, Contact, FeedbackRecord, Hasher, StoreSettings, epoch

PREFIX = "ct:"
# KEYS[1] = the customer's set; ARGV: member, at, window start, purge cutoff, ttl seconds
_COUNT_AND_RECORD = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
local n = redis.call('ZCOUNT', KEYS[1], ARGV[3], ARGV[2])
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if seen then
  local s = tonumber(seen)
  if s >= tonumber(ARGV[3]) and s <= tonumber(ARGV[2]) then n = n - 1 end
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return n
"""


class RedisStore:
    """Contact history and feedback in Redis."""

    def __init__(self, settings: StoreSettings, *, need_secret: bool = True) -> None:
        try:
            import redis
        except ImportError:
            raise UsageError("CT_STORE is a Redis URL but the redis package is not installed") from None
        self.settings = settings
        if need_secret and settings.secret is None:
            raise UsageError("a Redis history store needs CT_STORE_SECRET (the same on every replica)")
        try:
            self._r = redis.Redis.from_url(settings.url, socket_timeout=5, socket_connect_timeout=5)
            self._r.ping()
        except (redis.RedisError, ValueError) as exc:
            raise UsageError(f"history store {settings.url}: {exc}") from None
        self._errors = redis.RedisError
        self._script = self._r.register_script(_COUNT_AND_RECORD)
        self._hash: Hasher | None = None
        if need_secret and settings.secret is not None:
            self._hash = Hasher(settings.secret.encode("utf-8"))
            self._r.setnx(PREFIX + "secret_fingerprint", self._hash.fingerprint())
            stored = self._r.get(PREFIX + "secret_fingerprint")
            if stored is not None and stored.decode() != self._hash.fingerprint():
                raise UsageError(f"history store {settings.url} was written with a different CT_STORE_SECRET")

    def count_and_record(self, contacts: Sequence[Contact], now: float | None = None) -> list[int]:
        if self._hash is None:
            raise RuntimeError("store opened without its secret")
        now = time.time() if now is None else now
        window, keep = self.settings.window_days * DAY, self.settings.retention_days * DAY
        counts = []
        for c in contacts:
            at = epoch(c.at)
            member = f"{self._hash.ref(c.ref) or secrets.token_hex(16)}:{c.channel or ''}"
            counts.append(int(self._script(keys=[f"{PREFIX}c:{self._hash.key(c.key)}"],
                                           args=[member, repr(at), repr(at - window), repr(now - keep),
                                                 max(1, int(keep))])))
        return counts

    def add_feedback(self, record: FeedbackRecord) -> None:
        at = record.at or time.time()
        body = {"message_id": record.message_id, "labels": record.labels, "predicted": record.predicted,
                "text": record.text, "language": record.language, "channel": record.channel, "at": at,
                "nonce": secrets.token_hex(8)}
        pipe = self._r.pipeline()
        pipe.zadd(PREFIX + "feedback", {json.dumps(body): at})
        pipe.zremrangebyscore(PREFIX + "feedback", "-inf", f"({time.time() - self.settings.retention_days * DAY!r}")
        pipe.execute()

    def feedback(self) -> list[FeedbackRecord]:
        out = []
        for raw in self._r.zrange(PREFIX + "feedback", 0, -1):
            d: dict[str, Any] = json.loads(raw)
            d.pop("nonce", None)
            out.append(FeedbackRecord(**d))
        return out

    def purge(self, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - self.settings.retention_days * DAY
        gone = int(self._r.zremrangebyscore(PREFIX + "feedback", "-inf", f"({cutoff!r}"))
        for key in self._r.scan_iter(match=PREFIX + "c:*", count=500):
            gone += int(self._r.zremrangebyscore(key, "-inf", f"({cutoff!r}"))
        return gone

    def close(self) -> None:
        self._r.close()
