"""The benchmark report: one markdown table of every figure, the target checks (PASS/MISS, never
an exit code), notes, and the ``bench.json`` / ``bench.md`` files."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    """One target check: ``status`` is PASS, MISS, or n/a when its section did not run."""

    name: str
    status: str
    detail: str


def _f(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def _by_concurrency(runs: list[dict[str, Any]], c: int) -> dict[str, Any] | None:
    return next((r for r in runs if r["concurrency"] == c), None)


def _check(name: str, ok: bool | None, detail: str) -> Target:
    return Target(name, "n/a" if ok is None else ("PASS" if ok else "MISS"), detail)


#: the issue-12 targets (one `make bench` run)
SERVICE_VS_RAW, P50_OVER_RAW_MS, SERVICE_VS_TORCH, FAST_VS_FP32 = 0.9, 2.0, 5.0, 2.0
T_THROUGHPUT = f"service @32 ≥ {SERVICE_VS_RAW:.0%} of raw ORT best"
T_LATENCY = f"service p50 @1 within {P50_OVER_RAW_MS:g} ms of raw batch-1 p50"
T_TORCH = f"service ≥ {SERVICE_VS_TORCH:g}× torch pipeline @32"
T_FP32_1, T_FP32_BEST = (f"raw ORT ≥ {FAST_VS_FP32:g}× the fp32 build at batch 1",
                         f"raw ORT ≥ {FAST_VS_FP32:g}× the fp32 build at best batch")


def _model_targets(res: dict[str, Any]) -> list[Target]:
    raw, fp32 = res.get("raw") or {}, res.get("raw_fp32") or {}
    if not (raw.get("batch1_msgs_per_s") and fp32.get("batch1_msgs_per_s")):
        why = "not measured (give --fp32-model PATH)"
        return [_check(T_FP32_1, None, why), _check(T_FP32_BEST, None, why)]
    r1 = raw["batch1_msgs_per_s"] / fp32["batch1_msgs_per_s"]
    rb = raw["best_msgs_per_s"] / fp32["best_msgs_per_s"]
    return [_check(T_FP32_1, r1 >= FAST_VS_FP32, f"{_f(raw['batch1_msgs_per_s'])} vs {_f(fp32['batch1_msgs_per_s'])} "
                   f"msgs/s = {r1:.2f}×"),
            _check(T_FP32_BEST, rb >= FAST_VS_FP32, f"{_f(raw['best_msgs_per_s'])} (batch {raw['best_batch_size']}) vs "
                   f"{_f(fp32['best_msgs_per_s'])} (batch {fp32['best_batch_size']}) msgs/s = {rb:.2f}×")]


def targets(res: dict[str, Any]) -> list[Target]:
    """The targets, computed from the results (missing sections give n/a)."""
    raw = res.get("raw") or {}
    best = raw.get("best_msgs_per_s")
    svc, tor, batch = res.get("service") or [], res.get("torch") or [], res.get("batch") or {}
    s32, s1, t32 = _by_concurrency(svc, 32), _by_concurrency(svc, 1), _by_concurrency(tor, 32)
    out = []
    if s32 and best:
        r = s32["throughput_rps"] / best
        out.append(_check(T_THROUGHPUT, r >= SERVICE_VS_RAW,
                          f"{_f(s32['throughput_rps'])} vs {_f(best)} msgs/s = {r:.0%}"))
    else:
        out.append(_check(T_THROUGHPUT, None, "not measured"))
    if s1 and raw.get("latency_p50_ms") is not None:
        d = s1["p50_ms"] - raw["latency_p50_ms"]
        out.append(_check(T_LATENCY, d <= P50_OVER_RAW_MS,
                          f"{_f(s1['p50_ms'], 2)} vs {_f(raw['latency_p50_ms'], 2)} ms = {d:+.2f} ms"))
    else:
        out.append(_check(T_LATENCY, None, "not measured"))
    if s32 and t32 and t32["throughput_rps"] > 0:
        r = s32["throughput_rps"] / t32["throughput_rps"]
        out.append(_check(T_TORCH, r >= SERVICE_VS_TORCH,
                          f"{_f(s32['throughput_rps'])} vs {_f(t32['throughput_rps'])} req/s = {r:.2f}×"))
    else:
        out.append(_check(T_TORCH, None, "not measured"))
    out += _model_targets(res)
    if batch.get("ratio_vs_raw") is not None:
        r = batch["ratio_vs_raw"]
        out.append(_check("batch CLI ≥ 90% of raw ORT (same messages)", r >= 0.9,
                          f"{_f(batch['cli']['rows_per_s'])} vs {_f(batch['raw_ort_msgs_per_s'])} msgs/s = {r:.0%}"
                          + (f" (raw ORT on a uniform sample of {_f(batch['raw_ort_messages'])} of the "
                             f"{_f(batch['rows'])} messages)"
                             if (batch.get("raw_ort_messages") or batch["rows"]) < batch["rows"] else "")))
    else:
        out.append(_check("batch CLI ≥ 90% of raw ORT (same messages)", None, "not measured"))
    if batch.get("rss_growth") is not None:
        g, big, small = batch["rss_growth"], batch["cli_scaled"], batch["cli"]
        out.append(_check(f"batch peak RSS flat ({_f(big['rows'] or 0)} vs {_f(small['rows'] or 0)} rows, ±15%)",
                          abs(g) <= 0.15, f"{_f(big['peak_rss_mb'], 0)} vs {_f(small['peak_rss_mb'], 0)} MB = {g:+.1%}"))
    else:
        out.append(_check("batch peak RSS flat (±15%)", None, "not measured"))
    checked = [batch[k]["output_check"] for k in ("cli", "cli_scaled") if (batch.get(k) or {}).get("output_check")]
    if checked:
        out.append(_check("batch output: one row per input row, in order", all(c["one_per_input_row"] for c in checked),
                          ", ".join(f"{_f(c['rows_out'])} of {_f(c['rows_in'])} rows"
                                    f"{'' if c['in_order'] else ' (out of order)'}" for c in checked)))
    asm = batch.get("assembly") or []
    if asm:
        worst = max(asm, key=lambda r: r["added_mb"])
        by_fmt: dict[str, list[dict[str, Any]]] = {}
        for r in asm:
            by_fmt.setdefault(r["format"], []).append(r)
        growth = {f: rs[-1]["added_mb"] - rs[0]["added_mb"] for f, rs in by_fmt.items()}
        ok = all(abs(g) <= max(16.0, 0.15 * rs[0]["added_mb"]) for g, rs in zip(growth.values(), by_fmt.values()))
        out.append(_check(f"final-file assembly memory flat ({_f(asm[0]['rows'])} vs {_f(asm[-1]['rows'])} rows)", ok,
                          ", ".join(f"{f} {g:+.0f} MB" for f, g in growth.items())
                          + f"; largest: {worst['format']} +{worst['added_mb']:.0f} MB"))
    return out


def _output_note(cli: dict[str, Any]) -> str:
    chk = cli.get("output_check")
    if not chk:
        return ""
    if chk["one_per_input_row"]:
        return f"output checked: {_f(chk['rows_out'])} rows, one per input row, in order; "
    return (f"OUTPUT WRONG: {_f(chk['rows_out'])} rows for {_f(chk['rows_in'])} input rows"
            f"{'' if chk['in_order'] else ', out of order'}; ")


def table(res: dict[str, Any]) -> str:
    """Every figure in one markdown table."""
    head = ("| Section | Case | msgs/s (HTTP: req/s, 1 msg each) | p50 ms | p95 ms | p99 ms | errors | notes |\n"
            "|---|---|---:|---:|---:|---:|---:|---|")
    rows: list[str] = []
    for label, raw in (("raw ORT (in-process)", res.get("raw") or {}),
                       ("raw ORT, fp32 build (in-process)", res.get("raw_fp32") or {})):
        for r in raw.get("batches", []):
            b = r["batch_size"]
            notes = (["best"] if b == raw.get("best_batch_size") else []) + [f"{r['messages']} msgs",
                                                                               f"CPU {_f(r.get('cpu_ms_per_msg'), 2)} ms/msg"]
            p50 = p95 = p99 = "–"
            if b == 1:
                p50, p95, p99 = (_f(raw[f"latency_p{q}_ms"], 2) for q in (50, 95, 99))
                notes += ["latency = single-message predict()",
                          f"other processes {_f(raw.get('other_cpu_cores'), 2)} cores"]
            elif b == raw.get("best_batch_size"):
                p50 = _f(raw.get("best_batch_call_p50_ms"), 2)
                notes += [f"p50 = one predict() of {b} msgs ({raw.get('best_batch_calls')} calls)"]
            rows.append(f"| {label} | batch {b} | {_f(r['msgs_per_s'])} | {p50} | {p95} | {p99} | – "
                        f"| {'; '.join(notes)} |")
    for label, runs in (("service HTTP (Litestar+ORT)", res.get("service") or []),
                        ("torch pipeline HTTP (naive)", res.get("torch") or [])):
        for r in runs:
            per = (f" = {r['server_cpu_cores'] / r['throughput_rps'] * 1000:.2f} ms/req"
                   if r.get("server_cpu_cores") and r.get("throughput_rps") else "")
            cpu = (f"CPU cores: server {_f(r.get('server_cpu_cores'), 2)}{per}, load gen "
                   f"{_f(r.get('client_cpu_cores'), 2)}, other processes {_f(r.get('other_cpu_cores'), 2)}")
            rows.append(f"| {label} | concurrency {r['concurrency']} | {_f(r['throughput_rps'])} | {_f(r['p50_ms'], 2)} "
                        f"| {_f(r['p95_ms'], 2)} | {_f(r['p99_ms'], 2)} | {r['errors']} | {cpu} |")
    batch = res.get("batch") or {}
    for key in ("cli", "cli_scaled"):
        c = batch.get(key)
        if c:
            rows.append(f"| batch CLI (`score`) | {_f(c['rows'] or 0)} rows | {_f(c['rows_per_s'])} | – | – | – "
                        f"| {_f(c['errors'])} | {_output_note(c)}peak RSS {_f(c['peak_rss_mb'], 0)} MB; {_f(c['seconds'])} s wall "
                        f"incl. start-up; CPU cores: CLI {_f(c.get('cli_cpu_cores'), 2)}, "
                        f"other processes {_f(c.get('other_cpu_cores'), 2)} |")
        if key == "cli_scaled":
            for r in batch.get("assembly") or []:
                rows.append(f"| final-file assembly | {r['format']}, {_f(r['rows'])} rows | – | – | – | – | – "
                            f"| +{_f(r['added_mb'], 0)} MB over a {_f(r['rss_before_mb'], 0)} MB baseline (no model) |")
        if key == "cli" and batch.get("raw_ort_msgs_per_s"):
            n = batch.get("raw_ort_messages") or batch["rows"]
            which = f"same {_f(n)} msgs" if n == batch["rows"] else f"{_f(n)} of the same msgs (uniform sample)"
            rows.append(f"| raw ORT (in-process) | {which}, batch {batch['batch_size']} "
                        f"| {_f(batch['raw_ort_msgs_per_s'])} | – | – | – | – | model load excluded |")
    return "\n".join([head, *rows])


def outside_noise(res: dict[str, Any]) -> tuple[float, str]:
    """The most CPU other processes used during any measured section, and where."""
    seen: list[tuple[float, str]] = [((res.get("raw") or {}).get("other_cpu_cores") or 0.0, "raw ORT")]
    for key in ("service", "torch"):
        seen += [(r.get("other_cpu_cores") or 0.0, f"{key} @{r['concurrency']}") for r in res.get(key) or []]
    batch = res.get("batch") or {}
    seen += [(batch[k].get("other_cpu_cores") or 0.0, f"batch CLI {_f(batch[k]['rows'] or 0)} rows")
             for k in ("cli", "cli_scaled") if batch.get(k)]
    return max(seen)


def notes(res: dict[str, Any]) -> list[str]:
    """What a reader must know to judge the figures (noise, failed sections, fp32, the baselines)."""
    meta, notes = res["meta"], []
    if res.get("interrupted"):
        notes.append("INTERRUPTED (SIGINT/SIGTERM): only the sections finished before that are reported.")
    noise, where = outside_noise(res)
    if noise > 0.2:
        notes.append(f"WARNING: other processes on this machine were busy during the run (up to {noise:.2f} of "
                     f"{meta['cpu_count']} cores, during {where}); the figures are disturbed: re-run on an idle "
                     "machine before drawing conclusions.")
    for key in ("service_error", "torch_error", "batch_error"):
        if res.get(key):
            notes.append(f"{key.split('_')[0]} section NOT measured: {res[key].splitlines()[0]} (details in "
                         "bench.json and the server logs in the output directory)")
    svc = {r["concurrency"]: r for r in res.get("service") or []}
    top = svc.get(32) or (svc[max(svc)] if svc else None)
    if top:
        notes.append(f"{meta['cpu_count']} CPU cores shared by the server and the load generator (a separate "
                     f"process on the same machine): at concurrency {top['concurrency']} the server used "
                     f"{(top.get('server_cpu_cores') or 0):.2f} cores and the load generator "
                     f"{top['client_cpu_cores']:.2f}, so HTTP figures understate a server with dedicated cores.")
    if meta["quantization"] in ("none", "fp32"):
        notes.append("fp32 bundle (quantization: none): int8 did not pass the bundle's agreement gate, so every "
                     "figure here is for fp32 weights.")
    if res.get("torch"):
        notes.append("torch pipeline: converted e5 backbone with a RANDOM 5-way head (meaningless outputs, "
                     "valid for speed only); one request = one pipeline call in a worker thread, no batching; "
                     f"torch threads = {meta['cpu_count']}; same truncation (max_length) and e5 prefix.")
    if res.get("service") or res.get("torch"):
        notes.append("load generator: a minimal HTTP/1.1 keep-alive client on asyncio streams (tools/load.py, "
                     "pre-built requests), so it takes little of the cores the servers share; CPU ms/req = the "
                     "server process's CPU time per answered request (all its threads), CPU ms/msg for raw ORT = "
                     "this process's CPU time per message (ORT threads spin, so waiting counts as CPU).")
    notes.append("raw ORT latency = `Scorer.predict([text])` in-process; service latency adds HTTP, JSON, "
                 "language id, priority rules and the load generator's own overhead.")
    notes.append("raw ORT sorts a whole call's messages by token length before forming batches; the service "
                 "can only sort the messages that are queued together, so its batches pad somewhat more.")
    if res.get("batch"):
        notes.append("batch CLI rows/s use wall time from process start to exit (interpreter start-up, model "
                     "load, reading, language id, priority, writing and final assembly included); the raw ORT "
                     "comparison excludes model load.")
    return notes


def summary(res: dict[str, Any], checks: list[Target]) -> str:
    """The headline figures and every target of one run, as one markdown table (what the README shows)."""
    raw, fp32 = res.get("raw") or {}, res.get("raw_fp32") or {}
    svc, tor = res.get("service") or [], res.get("torch") or []
    status = {t.name: t for t in checks}
    rows = ["| figure | msgs/s | p50 ms | target | result |", "|---|---:|---:|---|---|"]

    def add(name: str, tput: Any, p50: Any, target: str = "") -> None:
        t = status.get(target)
        rows.append(f"| {name} | {_f(tput)} | {_f(p50, 2)} | {target} | "
                    f"{f'**{t.status}** {t.detail}' if t else ''} |")

    if raw:
        add("raw ORT, batch 1", raw.get("batch1_msgs_per_s"), raw.get("latency_p50_ms"))
        add(f"raw ORT, best batch ({raw.get('best_batch_size')}; p50 of one call)", raw.get("best_msgs_per_s"),
            raw.get("best_batch_call_p50_ms"))
    for c, target in ((1, T_LATENCY), (32, T_THROUGHPUT)):
        r = _by_concurrency(svc, c)
        add(f"service, concurrency {c}", r and r["throughput_rps"], r and r["p50_ms"], target)
    r = _by_concurrency(tor, 32)
    add("transformers pipeline, concurrency 32", r and r["throughput_rps"], r and r["p50_ms"], T_TORCH)
    if fp32:
        add("raw ORT fp32 build, batch 1", fp32.get("batch1_msgs_per_s"), fp32.get("latency_p50_ms"), T_FP32_1)
        add(f"raw ORT fp32 build, best batch ({fp32['best_batch_size']})", fp32["best_msgs_per_s"],
            fp32.get("best_batch_call_p50_ms"), T_FP32_BEST)
    else:
        add("raw ORT fp32 build", None, None, T_FP32_1)
    return "\n".join(rows)


def _served_as(meta: dict[str, Any]) -> str:
    """How the server ran its model (older bench.json files have no such record)."""
    st = meta.get("server_settings") or {}
    if "model_streams" not in st:
        return ""
    threads = st["intra_op_threads"] or "ORT's default number of"
    return (f" Server: {st['model_streams']} model stream(s) of {threads} ORT thread(s), "
            f"batches of at most {st['max_batch']} rows / {st['max_batch_tokens']} tokens.")


def render(res: dict[str, Any], checks: list[Target]) -> str:
    """The whole markdown report."""
    meta = res["meta"]
    rounds = f"; medians of {meta['repeat']} rounds" if (meta.get("repeat") or 1) > 1 else ""
    lines = [f"# complaint-triage benchmark — {meta['started_at']}", "",
             f"Bundle `{meta['bundle']}` ({meta['model']}, quantization: {meta['quantization']}); "
             f"{meta['cpu_count']} CPU cores; onnxruntime {meta['onnxruntime']}; "
             f"{meta['duration_s']:g} s per load level after {meta['warmup_s']:g} s warm-up"
             f"{' (--quick)' if meta['quick'] else ''}"
             f"{rounds}.{_served_as(meta)}",
             "", "## Summary", "", summary(res, checks), "", "## Every figure", "", table(res), "", "## Targets", ""]
    lines += [f"- **{t.status}** {t.name}: {t.detail}" for t in checks]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in res.get("notes", [])]
    return "\n".join(lines) + "\n"


def _clean(x: Any) -> Any:
    """NaN/inf → null, so ``bench.json`` is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write(out_dir: Path, res: dict[str, Any], checks: list[Target], markdown: str) -> tuple[Path, Path]:
    """``bench.json`` (every figure, machine-readable) and ``bench.md`` (the printed report)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out_dir / "bench.json", out_dir / "bench.md"
    jpath.write_text(json.dumps(_clean({**res, "targets": [asdict(t) for t in checks]}), indent=2, default=str) + "\n")
    mpath.write_text(markdown, encoding="utf-8")
    return jpath, mpath
