"""Batch scoring with routing, personal data and ``--history``: repeat contacts counted in arrival
order across channels, not twice when a file is scored again, and the same route fields in every
output format."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.batch.helpers import read_csv, read_jsonl, score

NOW = datetime.now(UTC).replace(microsecond=0)


def _rows() -> list[dict[str, Any]]:
    t = [(NOW - timedelta(days=3, hours=-h)).isoformat() for h in range(6)]
    return [
        {"id": "a1", "text": "my parcel never arrived, order #AB-12345", "channel": "email", "customer_key": "ann-7781",
         "created_at": t[0]},
        {"id": "b1", "text": "where is my refund", "channel": "chat", "customer_key": "bob-5523", "created_at": t[1]},
        {"id": "a2", "text": "still no parcel, call me 07911 123456", "channel": "phone_transcript",
         "customer_key": "ann-7781", "created_at": t[2]},
        {"id": "n1", "text": "my parcel is late", "channel": "twitter", "created_at": t[3]},  # no key: no history
        {"id": "a3", "text": "third time now, my parcel never arrived", "channel": "twitter", "customer_key": "ann-7781",
         "created_at": t[4]},
        {"id": "a4", "text": "my parcel never arrived", "channel": "twitter", "customer_key": "ann-7781",
         "created_at": t[5], "prior_contacts": 0},  # the file's own count wins
    ]


def _prior(rec: dict[str, Any]) -> int:
    return next((int(r.split()[0]) for r in rec["priority_reasons"] if "prior contact" in r), 0)


def test_history_counts_in_arrival_order_across_channels(tiny_bundle: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CT_STORE_SECRET", "batch-secret-0123456789")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    hist = tmp_path / "history.sqlite3"
    out = tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--history", hist, "--quiet") == 0
    recs = read_jsonl(out)
    assert all(r["is_complaint"] for r in recs)  # the tiny model (seed 0) calls these complaints
    assert [_prior(r) for r in recs] == [0, 0, 1, 0, 2, 0]
    assert recs[4]["route"]["queue"] == "escalations" and recs[4]["route"]["channel"] == "dm"
    assert recs[0]["exposes_personal_data"] == ["order_ref"] and recs[2]["exposes_personal_data"] == ["phone"]
    assert recs[2]["route"]["channel"] == "callback" and recs[0]["route"]["channel"] == "email"
    assert all(r["route"]["respond_by"] for r in recs)
    # the same file again (a re-run, or a resume after a kill): rows are not counted twice
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--history", hist, "--quiet",
                 "--restart") == 0
    assert [_prior(r) for r in read_jsonl(out)] == [0, 0, 1, 0, 2, 0]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("history"))
    assert b"ann-7781" not in raw and b"parcel" not in raw and b"a1" not in raw


def test_without_history_and_in_every_format(tiny_bundle: Path, tmp_path: Path) -> None:
    rows = _rows()
    rows[0].pop("created_at")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for fmt in ("jsonl", "csv", "parquet"):
        assert score("--input", src, "--output", tmp_path / f"out.{fmt}", "--model", tiny_bundle, "--quiet") == 0
    recs = read_jsonl(tmp_path / "out.jsonl")
    assert [_prior(r) for r in recs] == [0] * 6  # no --history: nothing counted
    assert recs[0]["route"]["respond_by"] is None  # batch never reads the clock for a missing created_at
    assert "respond_by unknown: the message has no created_at" in recs[0]["route"]["reasons"]
    csv_rows = read_csv(tmp_path / "out.csv")
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    for rec, row, prow in zip(recs, csv_rows, table):
        assert prow["route"] == rec["route"] and prow["exposes_personal_data"] == rec["exposes_personal_data"]
        assert row["route.queue"] == rec["route"]["queue"] and row["route.channel"] == rec["route"]["channel"]
        assert row["route.reasons"] == " | ".join(rec["route"]["reasons"])
        assert row["route.respond_by"] == (rec["route"]["respond_by"] or "")
        assert row["exposes_personal_data"] == " | ".join(rec["exposes_personal_data"])
