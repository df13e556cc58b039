"""Contact history and feedback over real SQLite files and a real redis-server: repeat contacts
across channels and restarts, the window and the retention, concurrent writers (threads and
processes), and nothing stored but keyed hashes, channels and times (texts only in feedback that
sent one)."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.errors import UsageError
from service.store import Contact, FeedbackRecord, StoreSettings, open_store
from tests.store.conftest import SECRET

T0 = (datetime.now(UTC) - timedelta(days=10)).replace(microsecond=0)  # within the 90-day retention
DAY = 86_400.0


def test_repeat_contacts_are_counted_across_channels_and_restarts(make_store: Any) -> None:
    store = make_store()
    got = store.count_and_record([Contact("cust-1", "email", T0, "m1"), Contact("cust-2", "email", T0, "x1"),
                                  Contact("cust-1", "phone_transcript", T0 + timedelta(days=1), "m2")])
    assert got == [0, 0, 1]
    store.close()
    again = make_store()  # a new process would see the same: the store is on disk / in Redis
    assert again.count_and_record([Contact("cust-1", "twitter", T0 + timedelta(days=2), "m3")]) == [2]
    assert again.count_and_record([Contact("cust-2", "twitter", T0 + timedelta(days=2))]) == [1]


def test_a_retried_message_is_not_counted_twice_but_unidentified_ones_are(make_store: Any) -> None:
    store = make_store()
    c = Contact("cust-1", "email", T0, "m1")
    assert store.count_and_record([c]) == [0]
    assert store.count_and_record([c]) == [0]  # the same message again (a client retry): not its own repeat
    assert store.count_and_record([Contact("cust-1", "email", T0 + timedelta(hours=1))]) == [1]
    assert store.count_and_record([Contact("cust-1", "email", T0 + timedelta(hours=2))]) == [2]


def test_only_contacts_within_the_window_count(make_store: Any) -> None:
    store = make_store(window_days=7, retention_days=3650)
    store.count_and_record([Contact("k", "sms", T0, "a"), Contact("k", "sms", T0 + timedelta(days=5), "b")])
    assert store.count_and_record([Contact("k", "chat", T0 + timedelta(days=8), "c")]) == [1]  # a is 8 days old
    assert store.count_and_record([Contact("k", "chat", T0 - timedelta(days=30), "d")]) == [0]  # later ones: no


def test_retention_deletes_old_contacts_and_feedback(make_store: Any) -> None:
    now = time.time()
    store = make_store(window_days=30, retention_days=60)
    at = datetime.fromtimestamp(now, UTC)
    store.count_and_record([Contact("k", "email", at - timedelta(days=70), "old"),
                            Contact("k", "email", at - timedelta(days=50), "kept")], now=now)
    store.add_feedback(FeedbackRecord("m-old", {"severity": "low"}, at=now - 61 * DAY))
    store.add_feedback(FeedbackRecord("m-new", {"severity": "high"}, at=now - 1 * DAY))
    store.purge(now)
    # a contact 45 days ago sees both (window 30 reaches back to day 75) unless the old one is gone
    assert store.count_and_record([Contact("k", "sms", at - timedelta(days=45), "probe")], now=now) == [1]
    assert [f.message_id for f in store.feedback()] == ["m-new"]
    store.close()
    assert [f.message_id for f in make_store(window_days=30, retention_days=60).feedback()] == ["m-new"]


def test_concurrent_threads_see_every_earlier_contact_exactly_once(make_store: Any) -> None:
    stores = [make_store() for _ in range(4)]  # one connection each, like four workers
    counts: list[int] = []
    lock = threading.Lock()

    def work(store: Any, w: int) -> None:
        for i in range(25):
            got = store.count_and_record([Contact("shared", "chat", T0, f"t{w}-{i}")])
            with lock:
                counts.extend(got)

    threads = [threading.Thread(target=work, args=(s, w)) for w, s in enumerate(stores * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == list(range(200))  # serialised: each saw all the ones committed before it


def _writer(url: str, worker: int, n: int, queue: Any) -> None:
    store = open_store(StoreSettings(url=url, secret=SECRET))
    out = []
    for i in range(n):
        out += store.count_and_record([Contact("shared", "email", T0, f"p{worker}-{i}")])
    store.close()
    queue.put(out)


def test_concurrent_processes_see_every_earlier_contact_exactly_once(store_url: str) -> None:
    open_store(StoreSettings(url=store_url, secret=SECRET)).close()  # create it (and its schema) once
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(store_url, w, 40, queue)) for w in range(3)]
    for p in procs:
        p.start()
    counts = [c for _ in procs for c in queue.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(counts) == list(range(120))


def _stored_bytes(url: str, tmp: Path) -> bytes:
    """Everything the store holds: the SQLite files (db, WAL, shm), or every Redis key and value."""
    if not url.startswith("redis://"):
        return b"".join(p.read_bytes() for p in Path(url).parent.iterdir() if p.name.startswith("store.sqlite3"))
    import redis

    r = redis.Redis.from_url(url)
    out = []
    for key in r.scan_iter():
        out.append(key)
        kind = r.type(key)
        if kind == b"zset":
            out += [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
        elif kind == b"string":
            out.append(r.get(key) or b"")
    r.close()
    return b"\n".join(out)


def test_only_keyed_hashes_are_stored_and_texts_only_when_sent(make_store: Any, store_url: str,
                                                               tmp_path: Path) -> None:
    store = make_store()
    raw_key, msg_id = "jane.doe@example.com", "tw-998877"
    store.count_and_record([Contact(raw_key, "twitter", T0, msg_id), Contact("+447911123456", "sms", T0)])
    store.add_feedback(FeedbackRecord("m-1", {"severity": "high"}, text=None, at=time.time()))
    data = _stored_bytes(store_url, tmp_path)
    for secret_thing in (raw_key, "447911123456", msg_id, SECRET, "parcel"):
        assert secret_thing.encode() not in data, secret_thing
    assert b"twitter" in data or store_url.startswith("redis")  # the channel is kept (Redis: in the member)
    store.add_feedback(FeedbackRecord("m-2", {"sentiment": "negative"}, text="my parcel is lost", at=time.time()))
    assert b"my parcel is lost" in _stored_bytes(store_url, tmp_path)  # the caller chose to keep this one


def test_a_different_secret_is_refused(make_store: Any, store_url: str) -> None:
    make_store().count_and_record([Contact("k", "sms", T0)])
    with pytest.raises(UsageError, match="different"):
        open_store(StoreSettings(url=store_url, secret="another-secret-0123456789"))


def test_sqlite_generates_its_secret_next_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    a = open_store(StoreSettings(url=str(path)))
    a.count_and_record([Contact("k", "sms", T0, "1")])
    a.close()
    key = tmp_path / "h.sqlite3.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and len(key.read_text().strip()) == 64
    b = open_store(StoreSettings(url=str(path)))  # a restart reads the same key: counts go on
    assert b.count_and_record([Contact("k", "email", T0, "2")]) == [1]
    b.close()
    import sqlite3

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_store_settings_are_clear_errors(tmp_path: Path, redis_url: str) -> None:
    with pytest.raises(UsageError, match="needs CT_STORE_SECRET"):
        open_store(StoreSettings(url=redis_url))
    with pytest.raises(UsageError, match="shorter than the history window"):
        StoreSettings(url="x", window_days=30, retention_days=7)
    with pytest.raises(UsageError, match="at least 16"):
        StoreSettings(url="x", secret="short")
    with pytest.raises(UsageError, match="history store redis://127.0.0.1:1/0"):
        open_store(StoreSettings(url="redis://127.0.0.1:1/0", secret=SECRET))
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(UsageError, match="history store"):
        open_store(StoreSettings(url=str(tmp_path / "dir.sqlite3"), secret=SECRET))
