"""Batch rows: bad text makes error records (grouped by kind), bad metadata only warnings, the one
contract with HTTP, fatal problems, the error-rate gate."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from model.labels import SEVERITY_LABELS
from service.contract.schemas import ScoreRequest
from service.contract.validate import ContractError, check_request
from tests.batch.helpers import (
    make_rows,
    read_csv,
    read_jsonl,
    score,
    write_jsonl,
)
from tests.helpers import copy_bundle

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
    # 7 of 12 rows are errors: over the default --max-error-rate 0.5, so exit 4, with OUT written
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--keep", "tag") == 4
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
        10: ("e10", "missing text (column 'text')"),
    }
    for row, (rid, reason) in expected.items():
        rec = by_row[row]
        assert rec["id"] == rid and rec["error"].startswith(reason), rec
        assert set(rec) == {"row", "id", "error", "tag"}  # no scores on an error record
    warned = {7: "author followers must be an integer from 0 to 1000000000, got -5",
              8: "created_at must be a time (ISO 8601, RFC 2822, Twitter, Unix s/ms, or pass --created-at-format), "
                 "got 'yesterday'",
              9: "unknown channel: 'pigeon' (allowed: twitter,"}
    for row, reason in warned.items():  # bad metadata: scored, the field ignored and named
        rec = by_row[row]
        assert rec["error"] is None and rec["severity"] in SEVERITY_LABELS, rec
        assert len(rec["warnings"]) == 1 and rec["warnings"][0].startswith(reason), rec
    assert by_row[7]["tag"] == "g" and by_row[4]["tag"] is None
    assert by_row[0]["error"] is None and by_row[11]["error"] is None and by_row[0]["warnings"] == []
    assert by_row[0]["tag"] == "a" and by_row[11]["id"] == "ok2"
    assert re.search(r"scored 12 rows in .*: 5 ok \(3 with warnings\), 7 errors", err), err
    assert re.search(r"^\s+2\s+undecodable line$", err, re.M), err
    assert re.search(r"^\s+2\s+missing text \(column 'text'\)$", err, re.M), err
    assert re.search(r"^\s+1\s+warning: created_at must be a time .*\(field ignored\)$", err, re.M), err
    assert "7 of 12 rows (58%) are errors, more than --max-error-rate 0.5; top reasons: 2 × " in err, err
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--max-error-rate", "0.6") == 0


def test_bad_metadata_in_csv(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CSV cells are strings: counts and booleans as text are converted exactly as HTTP converts them
    ("12", "TRUE", "1"); what HTTP cannot read ("Twitter", "yes") is a warning here too; only the
    empty text is an error."""
    src = tmp_path / "in.csv"
    src.write_text("id,text,author_followers,created_at,channel,verified\n"
                   "a,fine,12,2026-03-07T23:10:00Z,twitter,TRUE\n"
                   "b,fine,-1,,,\n"
                   "c,fine,,not a date,,\n"
                   "d,fine,,,carrier pigeon,\n"
                   "e,fine,,,,maybe\n"
                   "f,,,,,\n"
                   "g,fine,12.0,,Twitter,1\n"
                   "h,fine,,,,yes\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert score("--input", src, "--output", out, "--model", tiny_bundle) == 0
    cells = read_csv(out)
    assert [(c["row"], c["id"]) for c in cells] == [(str(i), x) for i, x in enumerate("abcdefgh")]
    assert cells[0]["error"] == "" and cells[0]["severity"] in SEVERITY_LABELS and cells[0]["warnings"] == ""
    assert all(c["error"] == "" and c["severity"] in SEVERITY_LABELS for i, c in enumerate(cells) if i != 5)
    assert "author followers" in cells[1]["warnings"] and "created_at" in cells[2]["warnings"]
    assert "unknown channel" in cells[3]["warnings"] and "verified must be true/false" in cells[4]["warnings"]
    assert cells[5]["error"] == "text is empty or whitespace"
    assert cells[6]["warnings"].startswith("unknown channel: 'Twitter'")  # channels are matched exactly, as in HTTP
    assert "public channel" not in cells[6]["priority_reasons"]  # the unreadable channel raised nothing
    assert cells[7]["warnings"] == "verified must be true/false, got 'yes'"
    assert "7 ok (6 with warnings), 1 errors" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- the HTTP contract, fatal errors


BOUNDARY_ROWS = [  # (row, error?, warned?) at and just past every bound of the HTTP contract
    ({"id": "x" * 256, "text": "hi"}, False, False), ({"id": "x" * 257, "text": "hi"}, True, False),
    ({"text": "hi", "author": {"followers": 1_000_000_000}}, False, False),
    ({"text": "hi", "author": {"followers": 1_000_000_001}}, False, True),
    ({"text": "hi", "author": {"followers": -1}}, False, True),
    ({"text": "hi", "prior_contacts": 10_000}, False, False), ({"text": "hi", "prior_contacts": 10_001}, False, True),
    ({"text": "hi", "prior_contacts": -1}, False, True),
    ({"text": "hi", "channel": "sms"}, False, False), ({"text": "hi", "channel": "fax"}, False, True),
    ({"text": "hi", "created_at": "2026-03-07T23:10:00+00:00"}, False, False),
    ({"text": "hi", "created_at": "last tuesday"}, False, True),
]


def test_batch_accepts_exactly_what_http_accepts(tiny_bundle: Path, tmp_path: Path) -> None:
    """One contract: a row at a bound scores in both paths, a row past it is refused (bad id) or
    warned about (bad metadata) in both."""
    http = []
    for row, _, _ in BOUNDARY_ROWS:  # HTTP's path: the body decoded as Litestar does, then check_request
        try:
            req = msgspec.convert({"messages": [row]}, ScoreRequest, strict=False)
            http.append((False, bool(check_request(req, max_messages=1, max_text_chars=100)[0].warnings)))
        except (msgspec.ValidationError, ContractError):
            http.append((True, False))
    assert http == [(err, warn) for _, err, warn in BOUNDARY_ROWS]  # the table itself matches HTTP
    flat = [{**{k: v for k, v in row.items() if k != "author"},
             **({"author_followers": row["author"]["followers"]} if "author" in row else {})}
            for row, _, _ in BOUNDARY_ROWS]
    src, out = write_jsonl(tmp_path / "in.jsonl", flat), tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle) == 0
    recs = read_jsonl(out)
    assert [(r["error"] is not None, bool(r.get("warnings"))) for r in recs] == http, recs


def test_error_summary_groups_by_kind_not_by_value(tiny_bundle: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"text": "hi", "channel": c} for c in ("fax", "pigeon", "telex")]
    rows += [{"text": "x" * n} for n in (101, 150)] + [{"text": "hi", "prior_contacts": n} for n in (-3, 20_000)]
    src, out = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--max-text-chars", "100") == 0
    err = capsys.readouterr().err
    assert re.search(r"^\s+3\s+warning: unknown channel \(field ignored\)$", err, re.M), err
    assert re.search(r"^\s+2\s+text too long$", err, re.M), err
    assert re.search(r"^\s+2\s+warning: prior_contacts must be an integer from 0 to 10000 \(field ignored\)$",
                     err, re.M), err


@pytest.mark.parametrize("keep", ["severity", "priority,region", "error", "row"])
def test_keep_refuses_contract_column_names(keep: str, tiny_bundle: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", make_rows(3, seed=2))
    out = tmp_path / "out.jsonl"
    before = sorted(tmp_path.iterdir())
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--keep", keep) == 2  # a usage mistake
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
    assert score("--input", src, "--output", out, "--model", bundle) == 2  # found before any work: exit 2
    err = capsys.readouterr().err
    assert err.startswith("complaint-triage score: ") and needle in err, err
    assert sorted(tmp_path.iterdir()) == before  # no output, no partial directory
    assert not out.exists()
