"""Batch scoring CLI (``complaint-triage score``): formats, values, error rows, fatal errors, resume, Ray."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli import main as cli_main
from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS
from model.scorer import Scorer
from service.contract.priority import load_config
from service.contract.schemas import Author, Message
from service.contract.triage import score_messages
from tests.conftest import ROOT
from tests.helpers import copy_bundle

CONTRACT = ("id", "severity", "severity_scores", "complaint_probability", "is_complaint", "private_followup",
            "private_followup_probability", "sentiment", "sentiment_scores", "language", "priority",
            "priority_reasons", "truncated")
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


# --------------------------------------------------------------------------------------------- formats


@pytest.fixture(scope="module")
def fmt_rows() -> list[dict[str, Any]]:
    rows = make_rows(37, seed=3)
    rows[5]["text"] = " \t "  # one error row, to check alignment in every format
    rows[9]["id"] = None
    return rows


@pytest.fixture(scope="module")
def fmt_expected(tiny_bundle: Path, fmt_rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return expected_results(tiny_bundle, fmt_rows)


@pytest.mark.parametrize(("in_fmt", "out_fmt"), [
    ("jsonl", "jsonl"), ("csv", "jsonl"), ("parquet", "jsonl"), ("stdin", "jsonl"),
    ("jsonl", "csv"), ("parquet", "csv"), ("jsonl", "parquet"), ("csv", "parquet"),
])
def test_formats_one_row_per_input_row_equal_to_in_process(
        in_fmt: str, out_fmt: str, tiny_bundle: Path, fmt_rows: list[dict[str, Any]],
        fmt_expected: dict[int, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    n = len(fmt_rows)
    if in_fmt == "stdin":
        data = write_jsonl(tmp_path / "in.jsonl", fmt_rows).read_bytes()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        src = "-"
    else:
        src = str(WRITERS[in_fmt](tmp_path / f"in.{in_fmt}", fmt_rows))
    out = tmp_path / f"out.{out_fmt}"
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--keep", ",".join(KEEP)) == 0
    assert f"scored {n} rows" in capsys.readouterr().err
    assert out.exists() and not (tmp_path / f"out.{out_fmt}.partial").exists()
    in_name = "in.jsonl" if in_fmt == "stdin" else f"in.{in_fmt}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([in_name, out.name])  # nothing else left behind

    if out_fmt == "jsonl":
        recs = read_jsonl(out)
        assert [r["row"] for r in recs] == list(range(n))
        for i, (rec, src_row) in enumerate(zip(recs, fmt_rows)):
            assert rec["id"] == src_row["id"]
            assert {k: rec[k] for k in KEEP} == {k: src_row[k] for k in KEEP}
            if i in fmt_expected:
                assert set(rec) == {"row", "error", *CONTRACT, *KEEP}
                assert rec["error"] is None
                assert strict_equal({k: rec[k] for k in CONTRACT}, fmt_expected[i]), i
            else:
                assert rec == {"row": i, "id": src_row["id"], "error": "text is empty or whitespace",
                               **{k: src_row[k] for k in KEEP}}

    elif out_fmt == "csv":
        with open(out, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh))
        assert header[:4] == ["row", "id", "error", "severity"] and header[-2:] == list(KEEP)
        cells = read_csv(out)
        assert [c["row"] for c in cells] == [str(i) for i in range(n)]
        for i, (c, src_row) in enumerate(zip(cells, fmt_rows)):
            assert c["id"] == (src_row["id"] or "")
            assert {k: c[k] for k in KEEP} == {k: src_row[k] for k in KEEP}
            if i not in fmt_expected:
                assert c["error"] == "text is empty or whitespace" and c["severity"] == c["priority"] == ""
                continue
            exp = fmt_expected[i]
            assert c["error"] == ""
            for k in SEVERITY_LABELS:
                assert float(c[f"severity_scores.{k}"]) == exp["severity_scores"][k]
            for k in SENTIMENT_LABELS:
                assert float(c[f"sentiment_scores.{k}"]) == exp["sentiment_scores"][k]
            for k in ("complaint_probability", "private_followup_probability"):
                assert float(c[k]) == exp[k], (i, k)
            for k in ("is_complaint", "private_followup", "truncated"):
                assert c[k] == str(exp[k])
            assert (c["severity"], c["sentiment"], c["language"]) == (exp["severity"], exp["sentiment"],
                                                                      exp["language"])
            assert int(c["priority"]) == exp["priority"]
            assert c["priority_reasons"].split(" | ") == exp["priority_reasons"]

    else:
        table = pq.read_table(out)
        assert table.schema.field("severity_scores").type == pa.struct([(k, pa.float64()) for k in SEVERITY_LABELS])
        assert table.schema.field("sentiment_scores").type == pa.struct([(k, pa.float64())
                                                                         for k in SENTIMENT_LABELS])
        assert table.schema.field("priority_reasons").type == pa.list_(pa.string())
        recs = table.to_pylist()
        assert [r["row"] for r in recs] == list(range(n))
        for i, (rec, src_row) in enumerate(zip(recs, fmt_rows)):
            assert rec["id"] == src_row["id"]
            assert {k: rec[k] for k in KEEP} == {k: src_row[k] for k in KEEP}
            if i in fmt_expected:
                assert rec["error"] is None
                assert strict_equal({k: rec[k] for k in CONTRACT}, fmt_expected[i]), i
            else:
                assert rec["error"] == "text is empty or whitespace"
                assert all(rec[k] is None for k in CONTRACT if k != "id")


def test_stdin_to_stdout(tiny_bundle: Path, fmt_rows: list[dict[str, Any]], fmt_expected: dict[int, dict[str, Any]],
                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", fmt_rows).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    monkeypatch.chdir(tmp_path)
    assert score("--input", "-", "--output", "-", "--model", tiny_bundle) == 0
    cap = capsysbinary.readouterr()
    recs = [msgspec.json.decode(line) for line in cap.out.splitlines()]
    assert [r["row"] for r in recs] == list(range(len(fmt_rows)))
    for i, rec in fmt_expected.items():
        assert strict_equal({k: recs[i][k] for k in CONTRACT}, rec)
    assert b"36 ok, 1 errors" in cap.err
    assert [p.name for p in tmp_path.iterdir()] == ["in.jsonl"]  # no stray partial directory


def test_csv_with_byte_order_mark(tiny_bundle: Path, tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a BOM; the first column must still be found by name."""
    src = tmp_path / "in.csv"
    src.write_bytes(b"\xef\xbb\xbftext,id\nmy parcel never arrived,b1\nthanks!,b2\n")
    out = tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle) == 0
    recs = read_jsonl(out)
    assert [(r["id"], r["error"]) for r in recs] == [("b1", None), ("b2", None)]


# --------------------------------------------------------------------------------------------- error rows


def test_bad_rows_become_error_records(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        b'{"id": "ok1", "text": "my parcel never arrived", "tag": "a"}',
        b'{"id": "e1", "channel": "email", "tag": "b"}',
        b'{"id": "e2", "text": 5, "tag": "c"}',
        b'{"id": "e3", "text": "  \\n\\t  ", "tag": "d"}',
        b'{"id": "e4", "text": "unterminated',
        b"\xff\xfe not utf-8",
        b"",
        b'[{"text": "an array, not an object"}]',
        b'{"id": "e7", "text": "hi", "author_followers": -5, "tag": "g"}',
        b'{"id": "e8", "text": "hi", "created_at": "yesterday", "tag": "h"}',
        b'{"id": "e9", "text": "hi", "channel": "pigeon", "tag": "i"}',
        b'{"id": "e10", "text": null, "tag": "j"}',
        b'{"id": "ok2", "text": "thanks, all good now", "tag": "k"}',
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--keep", "tag") == 0
    err = capsys.readouterr().err
    recs = read_jsonl(out)
    assert [r["row"] for r in recs] == list(range(12))  # the blank line is not a row
    by_row = {r["row"]: r for r in recs}
    expected = {
        1: ("e1", "missing text (column 'text')"),
        2: ("e2", "text must be a string, got int"),
        3: ("e3", "text is empty or whitespace"),
        4: (None, "undecodable line: "),
        5: (None, "undecodable line: "),
        6: (None, "line is not a JSON object, got list"),
        7: ("e7", "author followers must be an integer from 0 to 1000000000, got -5"),
        8: ("e8", "created_at must be ISO 8601, got 'yesterday'"),
        9: ("e9", "unknown channel: 'pigeon' (allowed: twitter,"),
        10: ("e10", "missing text (column 'text')"),
    }
    for row, (rid, reason) in expected.items():
        rec = by_row[row]
        assert rec["id"] == rid and rec["error"].startswith(reason), rec
        assert set(rec) == {"row", "id", "error", "tag"}  # no scores on an error record
    assert by_row[7]["tag"] == "g" and by_row[4]["tag"] is None
    assert by_row[0]["error"] is None and by_row[11]["error"] is None
    assert by_row[0]["tag"] == "a" and by_row[11]["id"] == "ok2"
    assert re.search(r"scored 12 rows in .*: 2 ok, 10 errors", err), err
    assert re.search(r"^\s+2\s+undecodable line$", err, re.M), err
    assert re.search(r"^\s+2\s+missing text \(column 'text'\)$", err, re.M), err
    assert re.search(r"^\s+1\s+created_at must be ISO 8601$", err, re.M), err


def test_bad_metadata_in_csv(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,text,author_followers,created_at,channel,verified\n"
                   "a,fine,12,2026-03-07T23:10:00Z,Twitter,yes\n"
                   "b,fine,-1,,,\n"
                   "c,fine,,not a date,,\n"
                   "d,fine,,,carrier pigeon,\n"
                   "e,fine,,,,maybe\n"
                   "f,,,,,\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert score("--input", src, "--output", out, "--model", tiny_bundle) == 0
    cells = read_csv(out)
    assert [(c["row"], c["id"]) for c in cells] == [(str(i), x) for i, x in enumerate("abcdef")]
    assert cells[0]["error"] == "" and cells[0]["severity"] in SEVERITY_LABELS
    assert "author followers" in cells[1]["error"] and "created_at" in cells[2]["error"]
    assert "unknown channel" in cells[3]["error"] and "verified must be true/false" in cells[4]["error"]
    assert cells[5]["error"] == "text is empty or whitespace"
    assert "1 ok, 5 errors" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- fatal errors


BOUNDARY_ROWS = [  # (row, valid?) at and just past every bound of the HTTP contract
    ({"id": "x" * 256, "text": "hi"}, True), ({"id": "x" * 257, "text": "hi"}, False),
    ({"text": "hi", "author": {"followers": 1_000_000_000}}, True),
    ({"text": "hi", "author": {"followers": 1_000_000_001}}, False),
    ({"text": "hi", "author": {"followers": -1}}, False),
    ({"text": "hi", "prior_contacts": 10_000}, True), ({"text": "hi", "prior_contacts": 10_001}, False),
    ({"text": "hi", "prior_contacts": -1}, False),
    ({"text": "hi", "channel": "sms"}, True), ({"text": "hi", "channel": "fax"}, False),
    ({"text": "hi", "created_at": "2026-03-07T23:10:00+00:00"}, True),
    ({"text": "hi", "created_at": "last tuesday"}, False),
]


def test_batch_accepts_exactly_what_http_accepts(tiny_bundle: Path, tmp_path: Path) -> None:
    """One contract: a row at a bound scores in both paths, a row past it is refused in both."""
    http_ok = []
    for row, _ in BOUNDARY_ROWS:
        try:
            msgspec.convert(row, Message)
            http_ok.append(True)
        except msgspec.ValidationError:
            http_ok.append(False)
    assert http_ok == [ok for _, ok in BOUNDARY_ROWS]  # the table itself matches the HTTP schema
    flat = [{**{k: v for k, v in row.items() if k != "author"},
             **({"author_followers": row["author"]["followers"]} if "author" in row else {})}
            for row, _ in BOUNDARY_ROWS]
    src, out = write_jsonl(tmp_path / "in.jsonl", flat), tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle) == 0
    recs = read_jsonl(out)
    assert [r["error"] is None for r in recs] == http_ok, [r["error"] for r in recs]


def test_error_summary_groups_by_kind_not_by_value(tiny_bundle: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"text": "hi", "channel": c} for c in ("fax", "pigeon", "telex")]
    rows += [{"text": "x" * n} for n in (101, 150)] + [{"text": "hi", "prior_contacts": n} for n in (-3, 20_000)]
    src, out = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--max-text-chars", "100") == 0
    err = capsys.readouterr().err
    assert re.search(r"^\s+3\s+unknown channel$", err, re.M), err
    assert re.search(r"^\s+2\s+text too long$", err, re.M), err
    assert re.search(r"^\s+2\s+prior_contacts must be an integer from 0 to 10000$", err, re.M), err


@pytest.mark.parametrize("keep", ["severity", "priority,region", "error", "row"])
def test_keep_refuses_contract_column_names(keep: str, tiny_bundle: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", make_rows(3, seed=2))
    out = tmp_path / "out.jsonl"
    before = sorted(tmp_path.iterdir())
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--keep", keep) == 1
    err = capsys.readouterr().err
    assert "already output column(s) of the scoring contract" in err and keep.split(",")[0] in err, err
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("case", ["missing-input", "no-bundle", "corrupt-bundle", "input-ext", "output-ext"])
def test_fatal_problems_exit_nonzero_and_write_nothing(case: str, tiny_bundle: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", make_rows(3, seed=1))
    out, bundle = tmp_path / "out.jsonl", tiny_bundle
    needle = {"missing-input": "cannot read input", "no-bundle": "bundle directory not found",
              "corrupt-bundle": "does not match its recorded checksum", "input-ext": "cannot tell the format",
              "output-ext": "cannot tell the format"}[case]
    if case == "missing-input":
        src = tmp_path / "nope.jsonl"
    elif case == "no-bundle":
        bundle = tmp_path / "no-such-bundle"
    elif case == "corrupt-bundle":
        bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
        with open(bundle / "model.onnx", "r+b") as fh:
            fh.truncate(1000)
    elif case == "input-ext":
        src = src.rename(tmp_path / "in.txt")
    else:
        out = tmp_path / "out.xlsx"
    before = sorted(tmp_path.iterdir())
    assert score("--input", src, "--output", out, "--model", bundle) == 1
    err = capsys.readouterr().err
    assert err.startswith("complaint-triage score: ") and needle in err, err
    assert sorted(tmp_path.iterdir()) == before  # no output, no partial directory
    assert not out.exists()


# --------------------------------------------------------------------------------------------- resume


def _counting_score_rows(monkeypatch: pytest.MonkeyPatch, interrupt_on_call: int | None) -> list[int]:
    """Wrap the per-chunk scorer: record each chunk's first row, optionally Ctrl-C on the k-th chunk."""
    import service.batch.rows

    real, firsts = service.batch.rows.score_rows, []

    def wrapper(scorer: Any, prio: Any, rows: Any, *a: Any) -> Any:
        if interrupt_on_call is not None and len(firsts) == interrupt_on_call:
            raise KeyboardInterrupt
        firsts.append(rows[0][0])
        return real(scorer, prio, rows, *a)

    monkeypatch.setattr(service.batch.rows, "score_rows", wrapper)
    return firsts


def test_interrupted_run_resumes_and_other_jobs_are_refused(tiny_bundle: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", make_rows(60, seed=5))
    b = write_parquet(tmp_path / "b.parquet", make_rows(45, seed=6))
    out, ref = tmp_path / "out.jsonl", tmp_path / "ref.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    common = ["--output", out, "--model", tiny_bundle, "--chunk-rows", 10, "--keep", "tag"]
    assert score("--input", a, "--output", ref, "--model", tiny_bundle, "--chunk-rows", 10, "--keep", "tag") == 0
    capsys.readouterr()

    with monkeypatch.context() as m:  # Ctrl-C while the third chunk is scored
        _counting_score_rows(m, interrupt_on_call=2)
        assert score("--input", a, *common) == 130
    err = capsys.readouterr().err
    assert "interrupted after 20 rows; re-run the same command to resume" in err
    assert not out.exists() and parts_of(partial) == [(0, 10), (10, 20)]

    with monkeypatch.context() as m:  # the same command resumes at row 20
        firsts = _counting_score_rows(m, interrupt_on_call=None)
        assert score("--input", a, *common) == 0
    assert firsts == [20, 30, 40, 50]
    assert "60 ok, 0 errors" in capsys.readouterr().err  # the summary covers the whole job
    assert out.read_bytes() == ref.read_bytes() and not partial.exists()

    out.unlink()
    with monkeypatch.context() as m:
        _counting_score_rows(m, interrupt_on_call=3)
        assert score("--input", a, *common) == 130
    capsys.readouterr()
    # a different input, other columns, or the same path with new content is another job: refuse, keep the parts
    with pytest.raises(SystemExit) as exc:
        score("--input", b, *common)
    assert "differs in: input, input_format, mtime_ns, size" in str(exc.value.code)
    assert "re-run with --restart" in str(exc.value.code)
    with pytest.raises(SystemExit) as exc:
        score("--input", a, *common[:-1], "tag,region")
    assert "differs in: columns)" in str(exc.value.code)
    with open(a, "a", encoding="utf-8") as fh:
        fh.write('{"text": "one more row"}\n')
    with pytest.raises(SystemExit) as exc:
        score("--input", a, *common)
    assert "size" in str(exc.value.code) and "--restart" in str(exc.value.code)
    assert parts_of(partial) == [(0, 10), (10, 20), (20, 30)] and not out.exists()

    with monkeypatch.context() as m:  # --restart discards the old parts and scores b from row 0
        firsts = _counting_score_rows(m, interrupt_on_call=None)
        assert score("--input", b, *common, "--restart") == 0
    assert firsts == [0, 10, 20, 30, 40]
    recs = read_jsonl(out)
    assert [r["row"] for r in recs] == list(range(45))
    assert [r["id"] for r in recs] == [f"m{i:04d}" for i in range(45)]
    assert all(r["error"] is None for r in recs) and not partial.exists()


class Killed(BaseException):
    """Stands in for SIGKILL at an exact point."""


def test_killed_while_removing_parts_leaves_no_stale_partial(tiny_bundle: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The worst moment to die: the final file is in place and the parts are being deleted (the
    manifest already gone). OUT must not sit next to the leftovers, and a later job on new input
    must not resume from them."""
    import shutil

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, make_rows(30, seed=8))
    real_rmtree = shutil.rmtree

    def dying_rmtree(path: Any, *a: Any, **kw: Any) -> None:
        if kw.get("ignore_errors") or not (Path(path) / "manifest.json").exists():
            return real_rmtree(path, *a, **kw)
        (Path(path) / "manifest.json").unlink()
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(shutil, "rmtree", dying_rmtree)
        with pytest.raises(Killed):
            score("--input", src, "--output", out, "--model", tiny_bundle, "--chunk-rows", 10)
    partial = tmp_path / "out.jsonl.partial"
    assert out.exists() and not partial.exists()
    assert [r["id"] for r in read_jsonl(out)] == [f"m{i:04d}" for i in range(30)]

    new_rows = make_rows(30, seed=9)
    for i, r in enumerate(new_rows):
        r["id"] = f"new{i}"
    write_jsonl(src, new_rows)
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--chunk-rows", 10) == 0
    assert [r["id"] for r in read_jsonl(out)] == [f"new{i}" for i in range(30)]


@pytest.fixture(scope="module")
def resume_job(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """~600 rows long enough that scoring takes a couple of seconds, and an uninterrupted reference."""
    d = tmp_path_factory.mktemp("resume")
    rows = make_rows(600, seed=11, max_words=700)
    rows[17]["text"] = ""
    src = write_jsonl(d / "in.jsonl", rows)
    ref = d / "ref.jsonl"
    assert score("--input", src, "--output", ref, "--model", tiny_bundle, "--chunk-rows", 50, "--quiet") == 0
    return {"src": src, "n": len(rows), "ref": ref.read_bytes(), "ids": [r["id"] for r in rows]}


def _cmd(job: dict[str, Any], bundle: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "cli", "score", "--input", str(job["src"]), "--output", str(out),
            "--model", str(bundle), "--chunk-rows", "50", "--quiet"]


def _wait_for_new_part(proc: subprocess.Popen[bytes], partial: Path, have: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if partial.is_dir() and len(parts_of(partial)) > have:
            return
        time.sleep(0.005)


def _check_final(out: Path, job: dict[str, Any]) -> None:
    data = out.read_bytes()
    recs = [msgspec.json.decode(line) for line in data.splitlines()]
    assert [r["row"] for r in recs] == list(range(job["n"]))  # no gaps, no duplicates
    assert [r["id"] for r in recs] == job["ids"]
    assert data == job["ref"]  # byte-identical to an uninterrupted run: every value equal


def test_sigkill_at_random_points_then_resume(resume_job: dict[str, Any], tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    cmd = _cmd(resume_job, tiny_bundle, out)
    rng = random.Random(20260307)
    mid_run_kills = 0
    for attempt in range(6):
        have = len(parts_of(partial)) if partial.is_dir() else 0
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if attempt % 2 == 0:  # at least one new part written by this process, then a little more
            _wait_for_new_part(proc, partial, have)
            time.sleep(rng.uniform(0, 0.3))
        else:  # anywhere: interpreter start-up, bundle load, manifest, scoring
            time.sleep(rng.uniform(0.1, 4.0))
        proc.kill()  # SIGKILL; a no-op when it already finished
        stderr = proc.communicate(timeout=30)[1].decode()
        assert proc.returncode in (0, -signal.SIGKILL), stderr
        if out.exists():  # the job had finished (exit, or killed while cleaning up / shutting down):
            assert not partial.exists(), "OUT exists next to OUT.partial"
            _check_final(out, resume_job)  # ... and OUT is complete, never half-written
            out.unlink()  # start the next attempt from scratch
            continue
        if partial.is_dir():  # killed mid-run: only whole, contiguous parts survive
            mid_run_kills += 0 < check_parts(partial) < resume_job["n"]
    assert mid_run_kills >= 2

    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert f"scored {resume_job['n']} rows" in done.stderr.decode()
    assert not partial.exists()
    _check_final(out, resume_job)


def test_sigint_exits_130_and_the_same_command_resumes(resume_job: dict[str, Any], tiny_bundle: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    cmd = _cmd(resume_job, tiny_bundle, out)
    # a shell that started this test run in the background (`make test &`) ignores SIGINT, and
    # children inherit that; Python then installs no KeyboardInterrupt handler. Reset it.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_new_part(proc, partial, 0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert re.search(r"interrupted after \d+ rows; re-run the same command to resume", err.decode()), err
    assert "Traceback" not in err.decode()
    done = check_parts(partial)
    assert 0 < done < resume_job["n"] and not out.exists()

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr.decode()
    assert not partial.exists()
    _check_final(out, resume_job)


# --------------------------------------------------------------------------------------------- Ray


def assert_same_records(ray_recs: list[dict[str, Any]], local_recs: list[dict[str, Any]], tol: float = 1e-6) -> None:
    """Floats within ``tol`` (different ORT thread counts), everything else identical, types included."""
    assert len(ray_recs) == len(local_recs)

    def same(a: Any, b: Any, where: str) -> None:
        if isinstance(a, float) and isinstance(b, float):
            assert abs(a - b) <= tol, where
        elif isinstance(a, dict):
            assert isinstance(b, dict) and list(a) == list(b), where
            for k in a:
                same(a[k], b[k], f"{where}.{k}")
        else:
            assert strict_equal(a, b), (where, a, b)

    for i, (got, want) in enumerate(zip(ray_recs, local_recs)):
        same(got, want, f"row {i}")


@pytest.mark.slow
def test_ray_engine_equals_local(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray")
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rows = make_rows(120, seed=21, max_words=60)
    rows[4]["text"] = "   "
    rows[40]["author_followers"] = None
    jsonl = write_jsonl(tmp_path / "in.jsonl", rows)
    with open(jsonl, "ab") as fh:  # a couple of bad lines (and a blank one) among the good ones
        fh.write(b"{not json\n\n\xff\xfe not utf-8\n[1, 2]\n")
        fh.write(json.dumps({"id": "last", "text": "ok at the end", "tag": "z", "region": "EU"}).encode() + b"\n")
    parquet = write_parquet(tmp_path / "in.parquet", rows)
    try:
        for src, n in ((jsonl, 124), (parquet, 120)):
            outs = {}
            for engine in ("local", "ray"):
                out = tmp_path / f"{src.suffix[1:]}-{engine}.jsonl"
                assert score("--input", src, "--output", out, "--model", tiny_bundle, "--engine", engine,
                             "--actors", 1, "--cpus-per-actor", 1, "--chunk-rows", 32, "--quiet",
                             "--keep", ",".join((*KEEP, "prior_contacts"))) == 0  # a nullable int column
                outs[engine] = read_jsonl(out)
                assert not (tmp_path / f"{out.name}.partial").exists()
            assert [r["row"] for r in outs["ray"]] == list(range(n))
            assert_same_records(outs["ray"], outs["local"])
            assert sum(r["error"] is not None for r in outs["ray"]) == (4 if src == jsonl else 1)
        capsys.readouterr()
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------------------------- Ray read plan


def _awkward_text_files(tmp_path: Path) -> dict[str, Path]:
    """JSONL and CSV with everything that breaks naive splitting: blank lines, CRLF, a BOM,
    U+2028 inside strings, invalid UTF-8, quoted newlines and bare CRs inside CSV cells."""
    rows = make_rows(40, seed=33, max_words=12)
    jsonl = write_jsonl(tmp_path / "awk.jsonl", rows)
    with open(jsonl, "ab") as fh:
        fh.write(b"\n\r\n{not json\n\xff\xfe not utf-8\n" + '{"text": "a\u2028b"}\r\n'.encode() + b"   \n")
        fh.write(b'{"id": "tail", "text": "no newline at the end"}')
    csv_path = tmp_path / "awk.csv"
    body = io.StringIO(newline="")
    w = csv.writer(body, lineterminator="\r\n")
    w.writerow(["id", "text", "tag"])
    for i, r in enumerate(rows):
        w.writerow([r["id"], r["text"] + ("\nsecond line\rthird" if i % 5 == 0 else ""), f"t{i}"])
        if i % 9 == 0:
            body.write("\r\n")  # a blank line is not a row
    body.write("x1,too,many,fields\r\nshort\r\n")
    csv_path.write_bytes(b"\xef\xbb\xbf" + body.getvalue().encode() + b"\xff bad byte,\"q\"\r\n")
    return {"jsonl": jsonl, "csv": csv_path, "parquet": write_parquet(tmp_path / "awk.parquet", rows)}


def _plan_rows(path: Path, fmt: str, skip: int, block: int) -> list[Any]:
    """Rows as the Ray read tasks produce them, in plan order, normalised like the local reader's."""
    from service.batch.ray_engine import ROW_COL, _read_row_groups, _read_text_range, plan_read

    plan = plan_read(str(path), fmt, skip, block)
    out: list[Any] = []
    for item in plan:
        assert item["first_row"] == skip + len(out)  # every task knows where its rows start
        if fmt == "parquet":
            out += _read_row_groups(pa.Table.from_pylist([item])).to_pylist()
        else:
            got = [r[ROW_COL] for r in _read_text_range(item)]
            out += got if fmt == "jsonl" else [msgspec.json.decode(b) for b in got]
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_ray_read_plan_yields_exactly_the_local_readers_rows(fmt: str, tmp_path: Path) -> None:
    from service.batch.formats import read_rows

    path = _awkward_text_files(tmp_path)[fmt]
    everything = list(read_rows(str(path), fmt))
    n = len(everything)
    assert n >= 40
    for skip in (0, 1, 6, 7, 8, 23, n - 1, n, n + 5):
        want = list(read_rows(str(path), fmt, skip=skip))
        assert want == everything[skip:]
        for block in (1, 3, 7, 50, 100_000):
            assert _plan_rows(path, fmt, skip, block) == want, (skip, block)


def test_unparsable_csv_is_a_clear_fatal_error_in_both_engines(tiny_bundle: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from service.batch.formats import InputError, read_rows
    from service.batch.ray_engine import plan_read

    src = tmp_path / "bad.csv"
    src.write_text("id,text\n1,ok\n2,\"" + "x" * 80 + "\"\n3,ok\n", encoding="utf-8")
    limit = csv.field_size_limit(50)  # a cell over the csv module's limit stops any CSV reader
    try:
        with pytest.raises(InputError, match="CSV cannot be parsed after row 0: field larger than field limit"):
            list(read_rows(str(src), "csv"))
        with pytest.raises(InputError, match="CSV cannot be parsed near byte 13: field larger"):
            plan_read(str(src), "csv", 0, 10)
        assert score("--input", src, "--output", tmp_path / "out.jsonl", "--model", tiny_bundle, "--quiet") == 1
        assert "CSV cannot be parsed" in capsys.readouterr().err
    finally:
        csv.field_size_limit(limit)


def test_ray_engine_resumes_interrupted_runs(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A Ray run killed mid-job, re-run, continues after its last part (and a local run can be
    finished on Ray): one row per input row, equal to an uninterrupted local run."""
    pytest.importorskip("ray")
    import ray

    import service.batch.job

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    files = _awkward_text_files(tmp_path)
    common = ("--model", tiny_bundle, "--chunk-rows", 8, "--read-rows", 13, "--actors", 1, "--cpus-per-actor", 1,
              "--quiet")
    real_add = service.batch.job.PartStore.add
    try:
        for fmt, first_engine in (("jsonl", "ray"), ("csv", "ray"), ("parquet", "local")):
            src = files[fmt]
            want = tmp_path / f"{fmt}-want.jsonl"
            assert score("--input", src, "--output", want, *common) == 0
            out = tmp_path / f"{fmt}-out.jsonl"
            calls = []

            def add(self: Any, start: int, records: list[dict[str, Any]], calls: list[int] = calls) -> None:
                if len(calls) == 2:
                    raise KeyboardInterrupt
                calls.append(start)
                real_add(self, start, records)

            monkeypatch.setattr(service.batch.job.PartStore, "add", add)
            assert score("--input", src, "--output", out, "--engine", first_engine, *common) == 130
            monkeypatch.setattr(service.batch.job.PartStore, "add", real_add)
            parts = sorted(p.name for p in (tmp_path / f"{out.name}.partial").glob("part-*"))
            assert parts == ["part-000000000000-000000000008.jsonl", "part-000000000008-000000000016.jsonl"]
            assert score("--input", src, "--output", out, "--engine", "ray", *common) == 0
            got, ref = read_jsonl(out), read_jsonl(want)
            assert [r["row"] for r in got] == list(range(len(ref)))
            assert_same_records(got, ref)
        capsys.readouterr()
    finally:
        ray.shutdown()
