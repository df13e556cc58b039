"""Scoring the files people really have: real export layouts (CSV, nested JSONL, Parquet structs),
timestamps as they come, column checks before any work, presets, and the error-rate gate."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.scorer import Scorer
from service.batch.preset import load_preset, preset_names
from service.contract.priority import load_config
from service.contract.schemas import Author, Message
from service.contract.triage import score_messages
from tests.batch.helpers import read_csv, read_jsonl, score

TEXTS = ["@SkyWays my bag never arrived in Madrid and nobody answers, refund me",
         "thanks for the quick rebooking, great crew", "flight delayed 4 hours again, this is a joke",
         "you cancelled my flight and kept my money. I want a refund now",
         "what is the baggage allowance to Lisbon?", "3rd time asking: where is my refund???"]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def reference(bundle: Path, msgs: list[Message]) -> list[dict[str, Any]]:
    """The in-process results for messages built by hand (independent of the file reader)."""
    return msgspec.to_builtins(score_messages(Scorer.load(bundle), msgs, load_config()))


def same_scores(rec: dict[str, Any], ref: dict[str, Any], exact: bool = True) -> None:
    """``rec`` holds ``ref``'s values (floats within 1e-6 when the batch composition differs)."""
    got = {k: rec[k] for k in ref}
    if exact:
        assert got == ref, (rec, ref)
        return
    for k, v in ref.items():
        numeric = isinstance(v, float) or (isinstance(v, dict) and all(isinstance(x, float) for x in v.values()))
        assert got[k] == (pytest.approx(v, rel=1e-6) if numeric else v), (k, got[k], v)


# --------------------------------------------------------------------------------------------- layouts


def test_airline_csv_with_us_dates(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's export: 'tweet_created' like 2/24/2015 11:35 read as month/day (unambiguous), every
    row scored, the times feeding the after-hours rule exactly as parsed by hand."""
    whens = ["2/24/2015 11:35", "2/22/2015 23:10", "2/17/2015 7:05", "2/16/2015 19:45", "2/24/2015 09:00",
             "2/21/2015 13:30"]
    rows = [[570306133677760513 + i, "negative", "Late Flight", "SkyWays", t, w] for i, (t, w) in
            enumerate(zip(TEXTS, whens))]
    src = write_csv(tmp_path / "Tweets.csv", ["tweet_id", "airline_sentiment", "negativereason", "airline", "text",
                                              "tweet_created"], rows)
    out = tmp_path / "scored.csv"
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--id-col", "tweet_id",
                 "--created-at-col", "tweet_created", "--input-timezone", "America/New_York", "--channel", "twitter",
                 "--keep", "airline,negativereason") == 0
    assert re.search(r"scored 6 rows .*: 6 ok \(0 with warnings\), 0 errors", capsys.readouterr().err)
    ny = ZoneInfo("America/New_York")
    msgs = [Message(text=t, id=str(r[0]), channel="twitter",
                    created_at=datetime.strptime(w, "%m/%d/%Y %H:%M").replace(tzinfo=ny))
            for t, w, r in zip(TEXTS, whens, rows)]
    cells = read_csv(out)
    for c, ref in zip(cells, reference(tiny_bundle, msgs)):
        assert c["error"] == "" and c["warnings"] == "" and c["airline"] == "SkyWays"
        assert (c["id"], int(c["priority"]), c["priority_reasons"]) == (ref["id"], ref["priority"],
                                                                         " | ".join(ref["priority_reasons"]))


def test_nested_jsonl_with_the_twitter_v1_preset(tiny_bundle: Path, tmp_path: Path) -> None:
    users = [{"screen_name": f"user{i}", "followers_count": n, "verified": i % 2 == 0}
             for i, n in enumerate([12, 250_000, 2_000_000, 40, 15_000, 0])]
    lines = [{"id": 923290000000000000 + i, "id_str": str(923290000000000000 + i), "text": t,
              "created_at": f"Tue Oct 31 {10 + 2 * i:02d}:10:47 +0000 2017", "user": u, "lang": "en",
              "in_reply_to_status_id_str": None} for i, (t, u) in enumerate(zip(TEXTS, users))]
    src = tmp_path / "tweets.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    out = tmp_path / "scored.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--preset", "twitter-v1") == 0
    recs = read_jsonl(out)
    msgs = [Message(text=x["text"], id=x["id_str"], channel="twitter",
                    author=Author(followers=x["user"]["followers_count"], verified=x["user"]["verified"]),
                    created_at=datetime(2017, 10, 31, 10 + 2 * i, 10, 47, tzinfo=UTC)) for i, x in enumerate(lines)]
    for rec, ref, x in zip(recs, reference(tiny_bundle, msgs), lines):
        same_scores(rec, ref)
        assert rec["user.screen_name"] == x["user"]["screen_name"] and rec["lang"] == "en"
    assert any("author reach 2M followers" in r["priority_reasons"] for r in recs)  # the nested field counted
    out_csv = tmp_path / "scored.csv"  # a whole nested object kept: JSON text in a CSV cell
    assert score("--input", src, "--output", out_csv, "--model", tiny_bundle, "--preset", "twitter-v1",
                 "--keep", "user,user.screen_name") == 0
    cells = read_csv(out_csv)
    assert [json.loads(c["user"]) for c in cells] == users and cells[1]["user.screen_name"] == "user1"


def test_parquet_with_a_struct_column(tiny_bundle: Path, tmp_path: Path) -> None:
    """Dotted paths into a Parquet struct, a timestamp column and a Unix-milliseconds column."""
    n = len(TEXTS)
    whens = [datetime(2026, 3, 7 + i, 6 + 3 * i, 15, tzinfo=UTC) for i in range(n)]
    table = pa.table({
        "body": pa.array(TEXTS),
        "user": pa.array([{"followers_count": 10 ** i, "verified": i % 3 == 0} for i in range(n)],
                         pa.struct([("followers_count", pa.int64()), ("verified", pa.bool_())])),
        "sent": pa.array(whens, pa.timestamp("ms", tz="UTC")),
        "sent_ms": pa.array([int(w.timestamp() * 1000) for w in whens], pa.int64()),
    })
    src = tmp_path / "msgs.parquet"
    pq.write_table(table, src, row_group_size=4)
    msgs = [Message(text=t, author=Author(followers=10 ** i, verified=i % 3 == 0), created_at=w)
            for i, (t, w) in enumerate(zip(TEXTS, whens))]
    refs = reference(tiny_bundle, msgs)
    for col in ("sent", "sent_ms"):
        out = tmp_path / f"out-{col}.parquet"
        assert score("--input", src, "--output", out, "--model", tiny_bundle, "--text-col", "body",
                     "--followers-col", "user.followers_count", "--verified-col", "user.verified",
                     "--created-at-col", col) == 0
        recs = pq.read_table(out).to_pylist()
        assert len(recs) == n
        for rec, ref in zip(recs, refs):
            same_scores(rec, ref)


def test_every_timestamp_format_in_one_file(tiny_bundle: Path, tmp_path: Path) -> None:
    """The same instant written seven ways scores identically, without a warning; a naive time is
    read in --input-timezone."""
    forms = ["2026-03-07T23:10:00Z", "2026-03-08T00:10:00+01:00", "Sat Mar 07 23:10:00 +0000 2026",
             "Sat, 07 Mar 2026 23:10:00 +0000", 1772925000, "1772925000000", "2026-03-07 18:10:00"]
    text = "my parcel never arrived, refund me"
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": text, "created_at": f}) + "\n"
                           for i, f in enumerate(forms)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    # the naive form is New York time: 18:10 EST = 23:10 UTC; the others carry their offset or are Unix times
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--input-timezone", "America/New_York") == 0
    recs = read_jsonl(out)
    [ref] = reference(tiny_bundle, [Message(text=text, created_at=datetime(2026, 3, 7, 23, 10, tzinfo=UTC))])
    for rec in recs:
        assert rec["warnings"] == [] and (rec["priority"], rec["priority_reasons"]) == (ref["priority"],
                                                                                       ref["priority_reasons"])
    assert "received outside business hours (Sat 23:10 Europe/London)" in ref["priority_reasons"]


# --------------------------------------------------------------------------------------------- bad metadata, bad text


def test_a_file_with_only_bad_metadata_is_all_scored(tiny_bundle: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rows = [[f"m{i}", t, "yesterday", "-1", "carrier pigeon", "maybe", "lots"] for i, t in enumerate(TEXTS)]
    src = write_csv(tmp_path / "in.csv", ["id", "text", "created_at", "author_followers", "channel", "verified",
                                          "prior_contacts"], rows)
    out = tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle) == 0
    err = capsys.readouterr().err
    recs = read_jsonl(out)
    refs = reference(tiny_bundle, [Message(text=t, id=f"m{i}") for i, t in enumerate(TEXTS)])
    for rec, ref in zip(recs, refs):
        assert rec["error"] is None and len(rec["warnings"]) == 5, rec
        ref["warnings"] = rec["warnings"]
        same_scores(rec, ref)  # exactly as if the metadata were absent
    assert "6 ok (6 with warnings), 0 errors" in err
    assert re.search(r"^\s+6\s+warning: unknown channel \(field ignored\)$", err, re.M), err


def test_a_file_with_only_bad_text_fails(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_csv(tmp_path / "in.csv", ["id", "text"], [[f"m{i}", " "] for i in range(5)] + [["m5", "fine"]])
    out = tmp_path / "out.csv"
    assert score("--input", src, "--output", out, "--model", tiny_bundle) == 4
    err = capsys.readouterr().err
    assert "1 ok (0 with warnings), 5 errors" in err
    assert ("complaint-triage score: 5 of 6 rows (83%) are errors, more than --max-error-rate 0.5; top reasons: "
            "5 × text is empty or whitespace") in err, err
    assert len(read_csv(out)) == 6  # written anyway: the error column says what went wrong per row
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--max-error-rate", "0.9") == 0


# --------------------------------------------------------------------------------------------- column checks


def _layouts(tmp_path: Path) -> dict[str, Path]:
    rows = [{"tweet_id": str(i), "text": t, "user": {"followers_count": 10, "verified": True}}
            for i, t in enumerate(TEXTS)]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    flat = [[r["tweet_id"], r["text"], 10] for r in rows]
    return {"jsonl": jsonl, "parquet": parquet,
            "csv": write_csv(tmp_path / "in.csv", ["tweet_id", "text", "user.followers_count"], flat)}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize(("flags", "needle"), [
    (["--text-col", "txt"], "--text-col 'txt' is not a column (did you mean 'text'?)"),
    (["--created-at-col", "none_such"], "--created-at-col 'none_such' is not a column"),
    (["--followers-col", "user.follower_count"], "(did you mean 'user.followers_count'?)"),
    (["--keep", "tweet_id,airline"], "--keep 'airline' is not a column"),
    (["--preset", "twcs"], "preset twcs (created_at) 'created_at' is not a column"),
])
def test_a_named_column_that_is_not_there_stops_at_once(fmt: str, flags: list[str], needle: str, tiny_bundle: Path,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, out = _layouts(tmp_path)[fmt], tmp_path / "out.jsonl"
    before = sorted(tmp_path.iterdir())
    assert score("--input", src, "--output", out, "--model", tiny_bundle, *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("complaint-triage score: ") and needle in err, err
    assert re.search(rf"Columns in .*in\.{fmt} \((header|schema|first 1000 rows.*?)\): tweet_id, text", err), err
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def _rchar() -> int:
    """Bytes this process has read through read(2) and friends so far (Linux task I/O accounting)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/<pid>/io")
def test_the_column_check_reads_only_the_head_of_a_1m_row_file(tiny_bundle: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A typo on a million-row file exits 2 after reading a few kilobytes, not the file."""
    from service.batch.columns import check_columns
    from service.batch.config import Columns, JobConfig
    from service.errors import UsageError

    n, line = 1_000_000, "my parcel never arrived and support ignores me again"
    files = {"csv": tmp_path / "big.csv", "jsonl": tmp_path / "big.jsonl", "parquet": tmp_path / "big.parquet"}
    files["csv"].write_text("id,text\n" + f"7,{line}\n" * n, encoding="utf-8")
    files["jsonl"].write_text(json.dumps({"id": "7", "text": line}) + "\n" * 1 + (
        json.dumps({"id": "7", "text": line}) + "\n") * (n - 1), encoding="utf-8")
    pq.write_table(pa.table({"id": pa.repeat("7", n), "text": pa.repeat(line, n)}), files["parquet"])
    for fmt, path in files.items():
        assert path.stat().st_size > 5_000_000 or fmt == "parquet"
        job = JobConfig(input=str(path), output=str(tmp_path / "o.jsonl"), input_format=fmt,
                        columns=Columns(text="txt"))
        before = _rchar()
        with pytest.raises(UsageError, match="did you mean 'text'"):
            check_columns(job)
        read = _rchar() - before
        assert read < 1_100_000, (fmt, read)  # JSONL: at most the first 1000 rows; CSV: one buffer; Parquet: the footer
        assert score("--input", path, "--output", tmp_path / "o.jsonl", "--model", tiny_bundle,
                     "--text-col", "txt") == 2
        assert "--text-col 'txt' is not a column" in capsys.readouterr().err
        assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.partial").exists()


def test_a_jsonl_field_after_the_sampled_head(tiny_bundle: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A field first seen after row 1000 is reported missing (the check reads the head only);
    --no-column-check scores the file, the field read where it is."""
    src = tmp_path / "late.jsonl"
    src.write_text(json.dumps({"text": "hi"}) + "\n" * 1 + (json.dumps({"text": "hi"}) + "\n") * 1000
                   + json.dumps({"text": "refund me", "fans": 2_000_000}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--followers-col", "fans") == 2
    assert "(first 1000 rows (a field that first appears later: --no-column-check))" in capsys.readouterr().err
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--followers-col", "fans",
                 "--no-column-check") == 0
    assert len(read_jsonl(out)) == 1002


def test_empty_files_and_default_columns_are_not_an_error(tiny_bundle: Path, tmp_path: Path) -> None:
    """Only named columns are checked: a file without the default metadata columns scores as before,
    and an empty file has nothing to score."""
    src = write_csv(tmp_path / "in.csv", ["text"], [[t] for t in TEXTS])
    assert score("--input", src, "--output", tmp_path / "out.jsonl", "--model", tiny_bundle) == 0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert score("--input", empty, "--output", tmp_path / "out2.jsonl", "--model", tiny_bundle) == 0
    assert (tmp_path / "out2.jsonl").read_bytes() == b""


# --------------------------------------------------------------------------------------------- presets


TWCS_HEADER = ["tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id",
               "in_response_to_tweet_id"]


def _twcs(tmp_path: Path) -> Path:
    rows = [["119237", "105834", "True", "Wed Oct 11 06:55:44 +0000 2017", TEXTS[0], "119236", ""],
            ["119236", "AirlineSupport", "False", "Wed Oct 11 13:25:49 +0000 2017", "@105834 sorry! DM us", "",
             "119237"],
            ["119238", "105835", "True", "Wed Oct 11 13:00:09 +0000 2017", TEXTS[2], "119239,119240", ""],
            ["119239", "AirlineSupport", "False", "Wed Oct 11 13:05:09 +0000 2017", "@105835 we are on it", "",
             "119238"],
            ["119241", "105835", "True", "Wed Oct 11 23:40:00 +0000 2017", TEXTS[5], "", "119239"]]
    return write_csv(tmp_path / "twcs.csv", TWCS_HEADER, rows)


def test_twcs_preset_scores_only_inbound_rows_and_keeps_thread_ids(tiny_bundle: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    src, out = _twcs(tmp_path), tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--preset", "twcs", "--chunk-rows", "2") == 0
    err = capsys.readouterr().err
    recs = read_jsonl(out)
    assert [(r["row"], r["id"]) for r in recs] == [(0, "119237"), (2, "119238"), (4, "119241")]
    assert [(r["author_id"], r["in_response_to_tweet_id"], r["response_tweet_id"]) for r in recs] == [
        ("105834", "", "119236"), ("105835", "", "119239,119240"), ("105835", "119239", "")]
    msgs = [Message(text=TEXTS[i], id=tid, channel="twitter", created_at=when) for i, tid, when in [
        (0, "119237", datetime(2017, 10, 11, 6, 55, 44, tzinfo=UTC)),
        (2, "119238", datetime(2017, 10, 11, 13, 0, 9, tzinfo=UTC)),
        (5, "119241", datetime(2017, 10, 11, 23, 40, tzinfo=UTC))]]
    for rec, ref in zip(recs, reference(tiny_bundle, msgs)):
        same_scores(rec, ref, exact=False)  # chunks of 2 rows: other batches than the reference's
    assert re.search(r"scored 5 rows .*: 3 ok \(0 with warnings\), 0 errors, 2 skipped", err), err
    assert re.search(r"^\s+2\s+skipped: inbound is not true$", err, re.M), err
    # explicit flags override the preset: every row, and other kept columns
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--preset", "twcs", "--where", "",
                 "--keep", "inbound") == 0
    recs = read_jsonl(out)
    assert [r["inbound"] for r in recs] == ["True", "False", "True", "False", "True"]
    assert "author_id" not in recs[0]


def test_a_preset_of_your_own_and_bad_presets(tiny_bundle: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    src = _twcs(tmp_path)
    mine = tmp_path / "mine.toml"
    mine.write_text((Path(load_preset("twcs").path).read_text()).replace('where = "inbound=true"',
                                                                          'where = "inbound=false"'))
    out = tmp_path / "out.jsonl"
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--preset", mine) == 0
    assert [r["id"] for r in read_jsonl(out)] == ["119236", "119239"]
    bad = tmp_path / "bad.toml"
    for text, needle in [('[columns]\ntxt = "text"\n', "unknown [columns] key(s) txt"),
                         ('wher = "a=b"\n', "unknown key(s) wher"), ('where = "inbound"\n', "COLUMN=VALUE"),
                         ("[columns\n", "--preset"), ('[columns]\nkeep = "a"\n', "columns.keep must be a list")]:
        bad.write_text(text)
        assert score("--input", src, "--output", out, "--model", tiny_bundle, "--preset", bad) == 2
        assert needle in capsys.readouterr().err
    assert score("--input", src, "--output", out, "--model", tiny_bundle, "--preset", "twcz") == 2
    assert "no such preset (shipped: twcs, twitter-v1, twitter-v2, zendesk" in capsys.readouterr().err


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_preset_reads_and_says_what_it_is(name: str) -> None:
    preset = load_preset(name)
    assert preset.raw["description"].strip() and preset.settings()["columns"]["text"]


@pytest.mark.parametrize(("flags", "needle"), [
    (["--channel", "pigeon"], "--channel 'pigeon': use one of twitter"),
    (["--where", "inbound"], "--where 'inbound': expected COLUMN=VALUE"),
    (["--max-error-rate", "1.5"], "--max-error-rate 1.5: must be from 0 to 1"),
    (["--input-timezone", "Mars/Olympus"], "unknown input time zone 'Mars/Olympus'"),
    (["--created-at-format", "mm/dd"], "has no % directive"),
    (["--text-col", ""], "--text-col must name a column"),
])
def test_bad_new_flags_are_usage_errors(flags: list[str], needle: str, tiny_bundle: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    src = write_csv(tmp_path / "in.csv", ["text"], [["hi"]])
    assert score("--input", src, "--output", tmp_path / "o.jsonl", "--model", tiny_bundle, *flags) == 2
    assert needle in capsys.readouterr().err
