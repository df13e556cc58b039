"""Batch-test helpers: source rows with every metadata column, writers for each input format, the
in-process reference results, and readers/checkers for outputs and part stores."""

from __future__ import annotations

import csv
import json
import random
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from cli import main as cli_main
from model.scorer import Scorer
from service.contract.priority import load_config
from service.contract.schemas import Author, Message
from service.contract.triage import score_messages
from tests.helpers import CONTRACT_FIELDS

CONTRACT = CONTRACT_FIELDS
KEEP = ("tag", "region")
SOURCE_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("channel", pa.string()),
                           ("author_followers", pa.int64()), ("verified", pa.bool_()), ("promoted", pa.bool_()),
                           ("prior_contacts", pa.int64()), ("created_at", pa.string()),
                           ("tag", pa.string()), ("region", pa.string())])
PART = re.compile(r"part-(\d{12})-(\d{12})\.jsonl$")
WORDS = ["my", "parcel", "never", "arrived", "and", "support", "ignores", "me", "again", "refund", "now", "please",
         "order", "late", "broken", "Mijn", "pakket", "is", "nog", "steeds", "niet", "bezorgd", "Ich", "kündige",
         "sofort", "das", "ist", "Betrug", "¿Dónde", "está", "mi", "reembolso?", "thanks", "👍", "great", "app",
         "lol", '"quoted"', "comma,", "semi;", "tab\t"]


# --------------------------------------------------------------------------------------------- data


def make_rows(n: int, seed: int, max_words: int = 120) -> list[dict[str, Any]]:
    """Source rows with every metadata column, None meaning 'absent' (omitted key / empty cell / null)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words)))
        if i % 11 == 3:
            text = "first line\nsecond line, with a comma and \"quotes\"\u2028and a line separator"
        rows.append({
            "id": f"m{i:04d}", "text": text,
            "channel": rng.choice(["twitter", "email", "chat", "review", None]),
            "author_followers": rng.choice([None, 0, 5_000, 20_000, 250_000, 2_000_000]),
            "verified": rng.choice([None, True, False]), "promoted": rng.choice([None, True, False]),
            "prior_contacts": rng.choice([None, 0, 1, 3, 7]),
            "created_at": rng.choice([None, "2026-03-07T23:10:00+00:00", "2026-03-09T10:00:00Z",
                                      "2026-03-10T19:45:00+01:00"]),
            "tag": f"tag-{i}", "region": rng.choice(["EU", "US", "APAC", "x,y \"z\""]),
        })
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i, r in enumerate(rows):
            fh.write(json.dumps({k: v for k, v in r.items() if v is not None}, ensure_ascii=False) + "\n")
            if i == 2:
                fh.write("   \n")  # blank lines are not rows
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    def cell(v: Any) -> str:
        return "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(SOURCE_SCHEMA.names))
        w.writeheader()
        w.writerows({k: cell(v) for k, v in r.items()} for r in rows)
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=SOURCE_SCHEMA), path, row_group_size=7)
    return path


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}


def to_message(r: dict[str, Any]) -> Message:
    """The message the row describes, built independently of the CLI's own parser."""
    f, v = r["author_followers"], r["verified"]
    when = r["created_at"]
    return Message(text=r["text"], id=r["id"], channel=r["channel"],
                   author=Author(followers=f, verified=v) if f is not None or v is not None else None,
                   promoted=bool(r["promoted"]), prior_contacts=r["prior_contacts"] or 0,
                   created_at=datetime.fromisoformat(when.replace("Z", "+00:00")) if when else None)


def expected_results(bundle: Path, rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """In-process reference for the scorable rows (as plain builtins), keyed by row number."""
    good = [i for i, r in enumerate(rows) if r["text"].strip()]
    results = score_messages(Scorer.load(bundle), [to_message(rows[i]) for i in good], load_config())
    return dict(zip(good, msgspec.to_builtins(results)))


# --------------------------------------------------------------------------------------------- running


def score(*argv: Any) -> int:
    return cli_main(["score", *map(str, argv)])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def strict_equal(a: Any, b: Any) -> bool:
    """Equality that also tells 3 from 3.0 and True from 1 (plain == does not)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    return a == b


def parts_of(partial: Path) -> list[tuple[int, int]]:
    return sorted((int(m[1]), int(m[2])) for p in partial.glob("part-*") if (m := PART.match(p.name)))


def check_parts(partial: Path) -> int:
    """Every durable part is complete and holds exactly the rows its name says; returns rows done."""
    done = 0
    for start, end in parts_of(partial):
        assert start == done, f"gap or overlap before part {start}-{end}"
        recs = read_jsonl(partial / f"part-{start:012d}-{end:012d}.jsonl")
        assert [r["row"] for r in recs] == list(range(start, end))
        done = end
    return done
