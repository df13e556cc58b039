"""Benchmark plumbing that can be checked without timing anything: the assembly-memory harness
runs the real writers and counts every row; the report turns figures into targets correctly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli import main as cli_main
from tests.batch.helpers import make_rows, write_jsonl
from tools.bench_report import render, table, targets


def test_assembly_harness_writes_every_row_in_every_format(tiny_bundle: Path, tmp_path: Path) -> None:
    from tools.bench_assembly import measure

    src, scored = write_jsonl(tmp_path / "in.jsonl", make_rows(40, seed=5)), tmp_path / "scored.jsonl"
    assert cli_main(["score", "--input", str(src), "--output", str(scored), "--model", str(tiny_bundle),
                     "--quiet"]) == 0
    res = measure(scored, rows=70, scale=3, chunk_rows=32)  # 70 = 2 full parts + a short one
    assert [(r["format"], r["rows"]) for r in res] == [(f, n) for f in ("jsonl", "csv", "parquet") for n in (70, 210)]
    for r in res:
        assert r["rows_out"] == r["rows"] and r["output_mb"] > 0 and r["peak_rss_mb"] >= r["rss_before_mb"]
    assert not list(Path(tmp_path).glob("*.partial"))


def _result(assembly_added: tuple[float, float]) -> dict[str, Any]:
    check = {"rows_out": 200_000, "rows_in": 200_000, "in_order": True, "error_rows": 0, "one_per_input_row": True}
    cli = {"rows": 200_000, "rows_per_s": 135.0, "peak_rss_mb": 1040.0, "errors": 0, "seconds": 1480.0,
           "output_check": check}
    big = {**cli, "rows": 1_000_000, "peak_rss_mb": 1050.0,
           "output_check": {**check, "rows_out": 999_999, "rows_in": 1_000_000, "one_per_input_row": False}}
    asm = [{"format": "parquet", "rows": n, "added_mb": a, "rss_before_mb": 84.0, "peak_rss_mb": 84.0 + a,
            "output_mb": 10.0, "rows_out": n} for n, a in zip((200_000, 1_000_000), assembly_added)]
    return {"meta": {"started_at": "t", "bundle": "b", "model": "m", "quantization": "none", "cpu_count": 2,
                     "onnxruntime": "x", "duration_s": 1.0, "warmup_s": 1.0, "quick": False},
            "raw": {"batches": [], "best_batch_size": 8},
            "batch": {"rows": 200_000, "scale": 5, "batch_size": 8, "cli": cli, "cli_scaled": big,
                      "raw_ort_msgs_per_s": 140.0, "raw_ort_messages": 20_000, "ratio_vs_raw": 135 / 140,
                      "rss_growth": 1050 / 1040 - 1, "assembly": asm}}


@pytest.mark.parametrize(("added", "status"), [((113.0, 112.8), "PASS"), ((113.0, 400.0), "MISS")])
def test_report_judges_assembly_and_batch_targets(added: tuple[float, float], status: str) -> None:
    res = _result(added)
    checks = {t.name.split(" (")[0]: t for t in targets(res)}
    assert checks["final-file assembly memory flat"].status == status
    assert checks["batch CLI ≥ 90% of raw ORT"].status == "PASS"  # 135 vs 140 = 96 %
    assert checks["batch peak RSS flat"].status == "PASS"
    assert checks["batch output: one row per input row, in order"].status == "MISS"  # 999,999 of 1,000,000
    md = render(res, targets(res))
    assert "20,000 of the same msgs (uniform sample)" in table(res)
    assert "| final-file assembly | parquet, 1,000,000 rows |" in md
    assert "OUTPUT WRONG: 999,999 rows for 1,000,000 input rows" in md


def test_output_check_catches_lost_duplicated_and_reordered_rows(tmp_path: Path) -> None:
    from tools.bench_batch import verify_output

    def check(rows: list[int]) -> dict[str, Any]:
        path = tmp_path / "out.jsonl"
        path.write_text("".join(json.dumps({"row": r, "id": "x", "error": None if r % 3 else "bad"}) + "\n"
                                for r in rows))
        return verify_output(path, 6)

    assert check([0, 1, 2, 3, 4, 5]) == {"rows_out": 6, "rows_in": 6, "in_order": True, "error_rows": 2,
                                          "one_per_input_row": True}
    assert not check([0, 1, 2, 3, 4])["one_per_input_row"]  # lost
    assert not check([0, 1, 2, 2, 3, 4, 5])["one_per_input_row"]  # duplicated
    assert not check([0, 2, 1, 3, 4, 5])["in_order"]  # reordered


def _serving(fast: tuple[float, float], fp32: tuple[float, float] | None) -> dict[str, Any]:
    def raw(b1: float, best: float) -> dict[str, Any]:
        return {"batches": [{"batch_size": 1, "messages": 1024, "msgs_per_s": b1, "cpu_ms_per_msg": 17.0},
                            {"batch_size": 8, "messages": 1024, "msgs_per_s": best, "cpu_ms_per_msg": 12.0}],
                "best_batch_size": 8, "best_msgs_per_s": best, "batch1_msgs_per_s": b1, "latency_p50_ms": 9.4,
                "latency_p95_ms": 12.0, "latency_p99_ms": 15.0, "best_batch_call_p50_ms": 50.0, "best_batch_calls": 37}

    def run(c: int, rps: float, p50: float) -> dict[str, Any]:
        return {"concurrency": c, "throughput_rps": rps, "p50_ms": p50, "p95_ms": p50, "p99_ms": p50, "errors": 0,
                "server_cpu_cores": 1.8, "client_cpu_cores": 0.02, "other_cpu_cores": 0.0}

    res = _result((1.0, 1.0))
    res.pop("batch")
    res["raw"] = raw(*fast)
    if fp32:
        res["raw_fp32"] = raw(*fp32)
    res["service"] = [run(1, 95.0, 11.0), run(32, 150.0, 210.0)]
    res["torch"] = [run(32, 29.0, 1100.0)]
    return res


def test_report_checks_the_serving_and_fp32_targets_and_summarises_them() -> None:
    res = _serving((250.0, 330.0), (111.0, 161.0))
    checks = {t.name: t for t in targets(res)}
    assert checks["service @32 ≥ 90% of raw ORT best"].status == "MISS"  # 150 / 330 = 45 %
    assert checks["service p50 @1 within 2 ms of raw batch-1 p50"].status == "PASS"  # 11.0 - 9.4 = +1.6 ms
    assert checks["service ≥ 5× torch pipeline @32"].status == "PASS"  # 150 / 29 = 5.17×
    assert checks["raw ORT ≥ 2× the fp32 build at batch 1"].status == "PASS"  # 250 / 111 = 2.25×
    assert checks["raw ORT ≥ 2× the fp32 build at best batch"].status == "PASS"  # 330 / 161 = 2.05×
    md = render(res, targets(res))
    assert "| service, concurrency 32 | 150.0 | 210.00 | service @32 ≥ 90% of raw ORT best | **MISS** 150.0 vs 330.0" in md
    assert "| raw ORT fp32 build, best batch (8) | 161.0 | 50.00 |" in md and "2.05×" in md
    assert "Server:" not in md  # a bench.json of before the streams setting: no claim about them
    res["meta"]["server_settings"] = {"model_streams": 2, "intra_op_threads": 1, "max_batch": 64,
                                      "max_batch_tokens": 8192}
    assert "Server: 2 model stream(s) of 1 ORT thread(s), batches of at most 64 rows / 8192 tokens." in render(
        res, targets(res))
    slow = {t.name: t.status for t in targets(_serving((150.0, 200.0), (111.0, 161.0)))}
    assert slow["raw ORT ≥ 2× the fp32 build at batch 1"] == slow["raw ORT ≥ 2× the fp32 build at best batch"] == "MISS"
    alone = {t.name: t for t in targets(_serving((250.0, 330.0), None))}
    assert alone["raw ORT ≥ 2× the fp32 build at batch 1"].status == "n/a"
    assert "--fp32-model" in alone["raw ORT ≥ 2× the fp32 build at batch 1"].detail


def test_median_runs_takes_the_median_of_each_level() -> None:
    from tools.bench import median_runs

    def run(c: int, rps: float) -> dict[str, Any]:
        return {"concurrency": c, "throughput_rps": rps, "p50_ms": 1000 / rps, "p95_ms": 1.0, "p99_ms": 1.0,
                "mean_ms": 1.0, "errors": 1, "requests": 10, "client_cpu_cores": 0.1, "server_cpu_cores": None,
                "other_cpu_cores": None}

    merged = median_runs([[run(1, 90.0), run(32, 140.0)], [run(1, 100.0), run(32, 80.0)],
                          [run(1, 95.0), run(32, 150.0)]])
    assert [m["throughput_rps"] for m in merged] == [95.0, 140.0]
    assert merged[1]["rounds_throughput_rps"] == [140.0, 80.0, 150.0] and merged[1]["errors"] == 3
    assert merged[0]["server_cpu_cores"] is None


def test_lean_load_client_reads_every_answer_of_a_real_server(tiny_bundle: Path, tmp_path: Path) -> None:
    import asyncio
    import time

    from tools.load import lean_closed_loop, one_message_bodies
    from tools.server import ServerProcess

    got: list[tuple[int | str, bytes]] = []
    texts = ["my parcel never arrived", "danke, alles gut 👍", "x" * 3000]
    with ServerProcess(tiny_bundle, log_dir=tmp_path, env={"CT_ORT_THREADS": "1", "CT_KEEP_ALIVE_S": "0.2"}) as srv:
        asyncio.run(lean_closed_loop(srv.score_url, one_message_bodies(texts, 0), 4, time.perf_counter() + 1.5,
                                     lambda status, _s, body, _t: got.append((status, body))))
        bad = []
        asyncio.run(lean_closed_loop(f"{srv.url}/nowhere", [b"{}"], 1, time.perf_counter() + 0.3,
                                     lambda status, _s, body, _t: bad.append(status)))
    assert len(got) > 10 and {s for s, _ in got} == {200}
    assert all(len(json.loads(b)["results"]) == 1 for _, b in got)  # whole bodies, one per request
    assert bad and set(bad) == {404}


def test_default_fp32_reference_is_the_kept_teacher_or_fp32_copy(tiny_bundle: Path, tmp_path: Path) -> None:
    """``make bench`` compares with the fp32 model the build left beside the bundle: the teacher of a
    shipped student first, else ``<bundle>.fp32``; never a converted bundle, never a missing one."""
    import dataclasses
    import shutil

    from model.bundle import read_meta, write_meta
    from tools.bench import default_fp32

    shipped = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, shipped)
    assert default_fp32(read_meta(shipped), shipped) is None
    shutil.copytree(tiny_bundle, tmp_path / "bundle.fp32")
    assert default_fp32(read_meta(shipped), shipped) == tmp_path / "bundle.fp32"
    teacher = tmp_path / "bundle.teacher"
    shutil.copytree(tiny_bundle, teacher)
    meta = read_meta(shipped)
    write_meta(shipped, dataclasses.replace(meta, metrics={**meta.metrics, "distillation": {
        "shipped": "student", "other_bundle": "bundle.teacher"}}))
    assert default_fp32(read_meta(shipped), shipped) == teacher
    write_meta(teacher, dataclasses.replace(read_meta(teacher), quantization="fp32+vocab_trim"))
    assert default_fp32(read_meta(shipped), shipped) == tmp_path / "bundle.fp32"  # a converted teacher is no reference
