"""Batch job formats: every input/output format, one row per input row, values equal to the in-process scorer."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS
from tests.batch.helpers import (
    CONTRACT,
    KEEP,
    WRITERS,
    expected_results,
    make_rows,
    read_csv,
    read_jsonl,
    score,
    strict_equal,
    write_jsonl,
)

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
    assert b"36 ok (0 with warnings), 1 errors" in cap.err
    assert [p.name for p in tmp_path.iterdir()] == ["in.jsonl"]  # no stray partial directory


def test_csv_with_byte_order_mark(tiny_bundle: Path, tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a BOM; the first column must still be found by name."""
    src = tmp_path / "in.csv"
    src.write_bytes(b"\xef\xbb\xbftext,id\nmy parcel never arrived,b1\nthanks!,b2\n")
    out = tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle) == 0
    recs = read_jsonl(out)
    assert [(r["id"], r["error"]) for r in recs] == [("b1", None), ("b2", None)]
