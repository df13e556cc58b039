"""``python -m tools.bench`` (``make bench``): how fast is the service, against what it could be
and against the naive alternative?

1. raw ONNX Runtime in-process (``Scorer.predict``) at batch 1/8/32/64, and batch-1 latency;
2. the real server (``complaint-triage serve`` in its own process) under a separate closed-loop
   load-generator process at several concurrencies (``tools/load.py``);
3. a plain ``transformers`` pipeline with torch behind a minimal server, same load generator
   (``tools/bench_torch_server.py``);
4. the batch CLI (``complaint-triage score``): throughput vs raw ORT and peak RSS at N and 5×N.

Prints one markdown table plus PASS/MISS target checks and writes ``bench.json`` and ``bench.md``.
It reports; it never fails because a target is missed. Needs the ``bench`` extra (psutil, httpx);
the torch section needs the ``train`` extra.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.bench_report import notes, render, targets, write
from tools.corpus import load_records, sample_texts, shuffled_texts, write_texts_json
from tools.load import post_json
from tools.measure import percentile, system_busy_seconds
from tools.server import HOST, ServerProcess, child_env

RAW_BATCH_SIZES = (1, 8, 32, 64)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--bundle", dest="bundle", type=Path, default=Path("artifacts/bundle"))
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="writes bench.json and bench.md here")
    p.add_argument("--duration", type=float, default=None, help="seconds per load level (default 20; --quick 5)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per load level (default 3; --quick 2)")
    p.add_argument("--quick", action="store_true", help="short run: 5 s levels, 20k/100k batch rows")
    p.add_argument("--concurrency", default="1,8,32,64", help="service concurrency levels")
    p.add_argument("--torch-concurrency", default="1,32", help="torch-pipeline concurrency levels")
    p.add_argument("--batch-rows", type=int, default=None, help="batch CLI rows N (default 200000; --quick 20000)")
    p.add_argument("--batch-scale", type=int, default=5, help="also run the CLI on N×this rows for peak RSS")
    p.add_argument("--no-service", action="store_true", help="skip the HTTP service section")
    p.add_argument("--no-batch", action="store_true", help="skip the batch CLI section")
    p.add_argument("--raw-sample", type=int, default=20_000,
                   help="raw-ORT comparison for the batch CLI on this many of its messages, drawn uniformly "
                        "(0 = all of them)")
    p.add_argument("--no-torch", action="store_true", help="skip the torch pipeline section")
    p.add_argument("--torch-backbone", default="multilingual-e5-small", help="backbone for the torch pipeline")
    p.add_argument("--seed", type=int, default=0)


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _ms_percentiles(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000.0 for s in seconds]
    return {f"latency_p{q}_ms": percentile(ms, q) for q in (50, 95, 99)}


def raw_ort(bundle: Path, texts: list[str], latency_texts: list[str], threads: int) -> dict[str, Any]:
    """In-process ``Scorer.predict`` throughput per batch size, and single-message latency."""
    from model.scorer import Scorer

    scorer = Scorer.load(bundle, intra_op_threads=threads)
    scorer.predict(texts[:64], batch_size=32)  # warm-up: allocations, kernels
    busy0, own0, wall0 = system_busy_seconds(), time.process_time(), time.perf_counter()
    batches = []
    for b in RAW_BATCH_SIZES:
        t0 = time.perf_counter()
        scorer.predict(texts, batch_size=b)
        dt = time.perf_counter() - t0
        batches.append({"batch_size": b, "messages": len(texts), "seconds": dt, "msgs_per_s": len(texts) / dt})
        _log(f"  batch {b:>2}: {len(texts) / dt:8.1f} msgs/s")
    lat = []
    for t in latency_texts:
        t0 = time.perf_counter()
        scorer.predict([t])
        lat.append(time.perf_counter() - t0)
    wall = time.perf_counter() - wall0
    other = max(0.0, (system_busy_seconds() - busy0) - (time.process_time() - own0)) / wall
    del scorer
    gc.collect()
    best = max(batches, key=lambda r: r["msgs_per_s"])
    res = {"batches": batches, "best_batch_size": best["batch_size"], "best_msgs_per_s": best["msgs_per_s"],
           "latency_samples": len(lat), **_ms_percentiles(lat), "intra_op_threads": threads,
           "other_cpu_cores": other}
    _log(f"  best batch {best['batch_size']}; single-message p50 {res['latency_p50_ms']:.2f} ms")
    return res


def raw_throughput(bundle: Path, threads: int, texts: list[str], batch_size: int) -> float:
    """``predict(texts, batch_size)`` messages/s, model load excluded (used on the batch-CLI texts)."""
    from model.scorer import Scorer

    scorer = Scorer.load(bundle, intra_op_threads=threads)
    scorer.predict(texts[:64], batch_size=batch_size)
    t0 = time.perf_counter()
    scorer.predict(texts, batch_size=batch_size)
    dt = time.perf_counter() - t0
    del scorer
    gc.collect()
    return len(texts) / dt


def torch_cmd(backbone: str, threads: int, max_length: int, prefix: str) -> Callable[[int], list[str]]:
    """The naive transformers-pipeline server (tools/bench_torch_server.py)."""
    return lambda port: [sys.executable, "-m", "tools.bench_torch_server", "--backbone", backbone, "--host", HOST,
                         "--port", str(port), "--threads", str(threads), "--max-length", str(max_length),
                         "--prefix", prefix]


def drive(server: ServerProcess, texts_file: Path, concurrency: int, duration: float, warmup: float,
          seed: int = 0) -> dict[str, Any]:
    """Run the load-generator process (``tools.load``) against ``server``; its JSON summary."""
    cmd = [sys.executable, "-m", "tools.load", "--url", server.score_url, "--texts", str(texts_file),
           "--concurrency", str(concurrency), "--duration", str(duration), "--warmup", str(warmup),
           "--server-pid", str(server.pid), "--seed", str(seed)]
    out = subprocess.run(cmd, capture_output=True, env=child_env(), timeout=warmup + duration + 300, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed ({out.returncode}):\n{out.stderr.decode(errors='replace')[-2000:]}")
    if not server.alive():
        raise RuntimeError(f"{server.name} died during the load test:\n{server.logs()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def load_levels(server: ServerProcess, levels: list[int], texts_file: Path, duration: float, warmup: float,
                seed: int) -> list[dict[str, Any]]:
    """Start one server, sanity-check one request, then one load run per concurrency level."""
    runs = []
    try:
        with server:
            status, body = post_json(server.score_url, {"messages": [{"id": "probe", "text": "my parcel never arrived"}]})
            if status != 200 or not isinstance(body, dict) or len(body.get("results", [])) != 1:
                raise RuntimeError(f"{server.name}: probe request answered {status}: {body!r}")
            for c in levels:
                _log(f"  {server.name}: concurrency {c}, {warmup:g} s warm-up + {duration:g} s")
                r = drive(server, texts_file, c, duration, warmup, seed)
                _log(f"    {r['throughput_rps']:8.1f} req/s  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  "
                     f"errors {r['errors']}")
                runs.append(r)
    finally:
        if server.proc is not None:
            _log(f"  {server.name}: stopped (exit code {server.proc.returncode})")
    return runs


def _run_sections(args: argparse.Namespace, res: dict[str, Any], bundle: Path, meta: Any, threads: int,
                  records: list[dict[str, Any]], pool: list[str], texts_file: Path, duration: float,
                  warmup: float, batch_rows: int, quick: bool) -> None:
    """The four sections, in order; a section that fails (a server that cannot start, a CLI run
    killed from outside) is recorded as not measured, and the others still run."""
    _log(f"[1/4] raw ONNX Runtime, {len(pool)} distinct messages in the pool")
    raw_n, lat_n = (384, 100) if quick else (1024, 300)
    res["raw"] = raw_ort(bundle, sample_texts(pool, raw_n, args.seed), sample_texts(pool, lat_n, args.seed + 1),
                         threads)

    if args.no_service:
        _log("[2/4] service: skipped (--no-service)")
    else:
        _log("[2/4] the real server (complaint-triage serve) under the load generator")
        server = ServerProcess(bundle, log_dir=args.out, name="service", keep_settings=True, env=_quiet())
        try:
            res["service"] = load_levels(server, _levels(args.concurrency), texts_file, duration, warmup, args.seed)
        except RuntimeError as exc:
            _log(f"  service section failed, reported as not measured: {exc}")
            res["service_error"] = str(exc)

    if args.no_torch:
        _log("[3/4] torch pipeline: skipped (--no-torch)")
    else:
        _log("[3/4] naive transformers pipeline (torch) under the same load generator")
        cmd = torch_cmd(args.torch_backbone, res["meta"]["cpu_count"], meta.max_length, meta.prefix)
        server = ServerProcess(cmd=cmd, log_dir=args.out, name="torch-pipeline", keep_settings=True)
        try:
            res["torch"] = load_levels(server, _levels(args.torch_concurrency), texts_file, duration, warmup,
                                       args.seed)
        except RuntimeError as exc:  # e.g. the train extra (torch/transformers) is not installed
            _log(f"  torch section failed, reported as not measured: {exc}")
            res["torch_error"] = str(exc)

    if args.no_batch:
        _log("[4/4] batch CLI: skipped (--no-batch)")
    else:
        from tools.bench_batch import batch_section

        _log(f"[4/4] batch CLI on {batch_rows:,} and {batch_rows * args.batch_scale:,} rows")
        try:
            res["batch"] = batch_section(bundle, records, batch_rows, args.batch_scale,
                                         res["raw"]["best_batch_size"],
                                         lambda texts, b: raw_throughput(bundle, threads, texts, b), seed=args.seed,
                                         raw_sample=args.raw_sample)
        except RuntimeError as exc:  # e.g. the CLI was killed from outside: keep the other figures
            _log(f"  batch section failed, reported as not measured: {exc}")
            res["batch_error"] = str(exc)


def _quiet() -> dict[str, str]:
    """The server logs warnings only, unless the caller chose a level."""
    return {} if os.environ.get("CT_LOG_LEVEL") else {"CT_LOG_LEVEL": "warning"}


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    from model.bundle import BundleError, read_meta
    from service.api.settings import Settings
    from service.errors import TriageError

    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    add_args(parser)
    args = parser.parse_args(argv)
    bundle = args.bundle.resolve()
    try:
        meta = read_meta(bundle)
        settings = Settings.from_env(bundle=bundle)
    except (BundleError, TriageError) as exc:
        print(f"tools.bench: {exc}", file=sys.stderr)
        return 2
    quick = args.quick
    duration = args.duration if args.duration is not None else (5.0 if quick else 20.0)
    warmup = args.warmup if args.warmup is not None else (2.0 if quick else 3.0)
    batch_rows = args.batch_rows if args.batch_rows is not None else (20_000 if quick else 200_000)
    cores = os.cpu_count() or 1
    import onnxruntime

    res: dict[str, Any] = {"meta": {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "bundle": str(bundle),
        "model": f"{meta.name} {meta.version}", "backbone": meta.backbone, "quantization": meta.quantization,
        "cpu_count": cores, "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
        "duration_s": duration, "warmup_s": warmup, "quick": quick, "seed": args.seed,
        "server_settings": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
                            "ort_threads": settings.ort_threads, "max_queue": settings.max_queue},
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM")}}
    records = load_records()
    pool = shuffled_texts(records, args.seed)
    res["meta"]["message_pool"] = len(pool)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ct-bench-"))
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM unwinds like Ctrl-C: servers stop, files go
    status = 0
    try:
        _run_sections(args, res, bundle, meta, settings.ort_threads, records, pool,
                      write_texts_json(work / "texts.json", pool), duration, warmup, batch_rows, quick)
    except KeyboardInterrupt:
        _log("tools.bench: interrupted; servers stopped, temporary files removed; "
             "reporting the sections finished so far")
        res["interrupted"] = True
        status = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(work, ignore_errors=True)
    res["notes"] = notes(res)
    checks = targets(res)
    markdown = render(res, checks)
    jpath, mpath = write(args.out, res, checks, markdown)
    print(markdown)
    _log(f"wrote {jpath} and {mpath}")
    return status


if __name__ == "__main__":
    sys.exit(main())
