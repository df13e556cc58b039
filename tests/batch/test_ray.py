"""Ray engine: read plan equals the local reader on awkward files, results equal local, runs resume."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator

import msgspec
import pyarrow as pa
import pytest

from tests.batch.helpers import (
    KEEP,
    make_rows,
    read_jsonl,
    score,
    strict_equal,
    write_jsonl,
    write_parquet,
)

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


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for this module's Ray runs (the engine starts it on its first run and
    reuses it after; starting it costs seconds), shut down after the last test."""
    pytest.importorskip("ray")
    import ray

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)  # a local instance, never a cluster the caller points at
        yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_engine_equals_local(local_ray: None, tiny_bundle: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    rows = make_rows(120, seed=21, max_words=60)
    rows[4]["text"] = "   "
    rows[40]["author_followers"] = None
    jsonl = write_jsonl(tmp_path / "in.jsonl", rows)
    with open(jsonl, "ab") as fh:  # a couple of bad lines (and a blank one) among the good ones
        fh.write(b"{not json\n\n\xff\xfe not utf-8\n[1, 2]\n")
        fh.write(json.dumps({"id": "last", "text": "ok at the end", "tag": "z", "region": "EU"}).encode() + b"\n")
    parquet = write_parquet(tmp_path / "in.parquet", rows)
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
    # --where skips and metadata warnings travel through Ray exactly as through the local engine
    flt = tmp_path / "flt.jsonl"
    flt.write_text("".join(json.dumps({"id": f"f{i}", "text": r["text"], "inbound": i % 3 != 0,
                                       "created_at": "yesterday" if i % 4 == 0 else "Sat Mar 07 23:10:00 +0000 2026",
                                       "user": {"n": r["author_followers"]}}) + "\n"
                           for i, r in enumerate(rows[:60])), encoding="utf-8")
    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"flt-{engine}.jsonl"
        assert score("--input", flt, "--output", out, "--model", tiny_bundle, "--engine", engine, "--actors", 1,
                     "--cpus-per-actor", 1, "--chunk-rows", 16, "--read-rows", 25, "--quiet",
                     "--where", "inbound=true", "--followers-col", "user.n") == 0
        outs[engine] = read_jsonl(out)
    assert [r["row"] for r in outs["ray"]] == [i for i in range(60) if i % 3 != 0]
    assert_same_records(outs["ray"], outs["local"])
    # every 4th row has a bad created_at; row 4 (blank text) is an error row, without warnings
    assert sum(bool(r.get("warnings")) for r in outs["ray"]) == sum(i % 4 == 0 and i % 3 != 0 and i != 4
                                                                    for i in range(60))
    capsys.readouterr()


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


def test_ray_engine_resumes_interrupted_runs(local_ray: None, tiny_bundle: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A Ray run killed mid-job, re-run, continues after its last part (and a local run can be
    finished on Ray): one row per input row, equal to an uninterrupted local run."""
    import service.batch.store

    files = _awkward_text_files(tmp_path)
    common = ("--model", tiny_bundle, "--chunk-rows", 8, "--read-rows", 13, "--actors", 1, "--cpus-per-actor", 1,
              "--quiet")
    real_add = service.batch.store.PartStore.add
    # CSV is left out: its read plan is checked row for row above, and each Ray run costs ~20 s
    for fmt, first_engine in (("jsonl", "ray"), ("parquet", "local")):
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

        monkeypatch.setattr(service.batch.store.PartStore, "add", add)
        assert score("--input", src, "--output", out, "--engine", first_engine, *common) == 130
        monkeypatch.setattr(service.batch.store.PartStore, "add", real_add)
        parts = sorted(p.name for p in (tmp_path / f"{out.name}.partial").glob("part-*"))
        assert parts == ["part-000000000000-000000000008.jsonl", "part-000000000008-000000000016.jsonl"]
        assert score("--input", src, "--output", out, "--engine", "ray", *common) == 0
        got, ref = read_jsonl(out), read_jsonl(want)
        assert [r["row"] for r in got] == list(range(len(ref)))
        assert_same_records(got, ref)
    capsys.readouterr()
