"""``python -m tools.bench`` (``make bench``): how fast is the service, against what it could be
and against the naive alternative?

1. raw ONNX Runtime in-process (``Scorer.predict``) at batch 1/8/16/32/64, single-message latency and
   the latency of one best-batch call; with ``--fp32-model PATH`` the same for an fp32 build of the
   same weights, interleaved batch size by batch size, and the fast/fp32 ratio;
2. the real server (``complaint-triage serve`` in its own process) under a separate closed-loop
   load-generator process at several concurrencies (``tools/load.py``, its lean HTTP client);
   with ``--repeat N``, N rounds of (1) and (2) alternate on one server and every figure is a median;
3. a plain ``transformers`` pipeline with torch behind a minimal server, same load generator
   (``tools/bench_torch_server.py``);
4. the batch CLI (``complaint-triage score``): throughput vs raw ORT and peak RSS at N and 5×N.

Prints a summary table (every headline figure and target with PASS/MISS: what the README shows),
then every figure, and writes ``bench.json`` and ``bench.md``. It reports; it never fails because
a target is missed. Needs the ``bench`` extra (psutil, httpx); the torch section needs ``train``.
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

RAW_BATCH_SIZES = (1, 8, 16, 32, 64)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--bundle", dest="bundle", type=Path, default=Path("artifacts/bundle"))
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="writes bench.json and bench.md here")
    p.add_argument("--duration", type=float, default=None, help="seconds per load level (default 20; --quick 5)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per load level (default 3; --quick 2)")
    p.add_argument("--quick", action="store_true", help="short run: 5 s levels, 20k/100k batch rows")
    p.add_argument("--concurrency", default="1,8,32,64", help="service concurrency levels (1 and 32 are the targets)")
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
    p.add_argument("--fp32-model", type=Path, default=None,
                   help="an fp32 build of the same weights, or the fp32 teacher of a distilled student: its raw "
                        "ORT speed is measured beside the bundle's (interleaved) and the fast/fp32 ratio checked "
                        "(target >= 2x); default: the teacher the build kept beside a shipped student")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of raw ORT + service levels, interleaved on one server; figures are medians")


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _ms_percentiles(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000.0 for s in seconds]
    return {f"latency_p{q}_ms": percentile(ms, q) for q in (50, 95, 99)}


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2 if s else float("nan")


class RawBench:
    """In-process ``Scorer.predict`` for one or two bundles (the served one, and optionally an fp32
    build of the same weights), measured interleaved, batch size by batch size, so both see the same
    machine; :meth:`round` can be called several times (``--repeat``) and :meth:`summary` takes medians."""

    def __init__(self, bundles: dict[str, Path], texts: list[str], latency_texts: list[str], threads: int) -> None:
        from model.scorer import Scorer

        self.scorers = {k: Scorer.load(p, intra_op_threads=threads) for k, p in bundles.items()}
        for sc in self.scorers.values():
            sc.predict(texts[:64], batch_size=32)  # warm-up: allocations, kernels
        self.texts, self.latency_texts, self.threads = texts, latency_texts, threads
        self.tput: dict[str, dict[int, list[float]]] = {k: {b: [] for b in RAW_BATCH_SIZES} for k in bundles}
        self.cpu: dict[str, dict[int, list[float]]] = {k: {b: [] for b in RAW_BATCH_SIZES} for k in bundles}
        self.lat: dict[str, list[float]] = {k: [] for k in bundles}
        self.call_lat: dict[str, list[float]] = {k: [] for k in bundles}
        self.other: list[float] = []

    def round(self) -> None:
        """One pass: every batch size for every bundle, single-message latency, best-batch call latency."""
        busy0, own0, wall0 = system_busy_seconds(), time.process_time(), time.perf_counter()
        n = len(self.texts)
        for b in RAW_BATCH_SIZES:
            for k, sc in self.scorers.items():
                t0, c0 = time.perf_counter(), time.process_time()
                sc.predict(self.texts, batch_size=b)
                dt = time.perf_counter() - t0
                self.tput[k][b].append(n / dt)
                self.cpu[k][b].append((time.process_time() - c0) / n * 1000.0)
                _log(f"  {k}: batch {b:>2}: {n / dt:8.1f} msgs/s")
        for t in self.latency_texts:
            for k, sc in self.scorers.items():
                t0 = time.perf_counter()
                sc.predict([t])
                self.lat[k].append(time.perf_counter() - t0)
        for k, sc in self.scorers.items():  # a client's call of best-batch size: how long it waits
            b = self.best(k)
            for i in range(0, len(self.texts) - b + 1, b):
                t0 = time.perf_counter()
                sc.predict(self.texts[i:i + b], batch_size=b)
                self.call_lat[k].append(time.perf_counter() - t0)
        wall = time.perf_counter() - wall0
        self.other.append(max(0.0, (system_busy_seconds() - busy0) - (time.process_time() - own0)) / wall)

    def best(self, key: str) -> int:
        return max(RAW_BATCH_SIZES, key=lambda b: _median(self.tput[key][b]))

    def summary(self, key: str) -> dict[str, Any]:
        """Medians over the rounds, in the shape the report reads."""
        batches = [{"batch_size": b, "messages": len(self.texts), "msgs_per_s": _median(self.tput[key][b]),
                    "rounds_msgs_per_s": self.tput[key][b], "cpu_ms_per_msg": _median(self.cpu[key][b])}
                   for b in RAW_BATCH_SIZES]
        best = self.best(key)
        res = {"batches": batches, "best_batch_size": best, "best_msgs_per_s": _median(self.tput[key][best]),
               "batch1_msgs_per_s": _median(self.tput[key][1]), "latency_samples": len(self.lat[key]),
               **_ms_percentiles(self.lat[key]), "intra_op_threads": self.threads,
               "best_batch_call_p50_ms": percentile([x * 1000.0 for x in self.call_lat[key]], 50),
               "best_batch_calls": len(self.call_lat[key]), "rounds": len(self.other),
               "other_cpu_cores": max(self.other) if self.other else None,
               "bundle": str(self.scorers[key].bundle_dir), "quantization": self.scorers[key].meta.quantization}
        _log(f"  {key}: best batch {best}; single-message p50 {res['latency_p50_ms']:.2f} ms")
        return res

    def close(self) -> None:
        self.scorers.clear()
        gc.collect()


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


def probe(server: ServerProcess) -> None:
    """One real request before measuring: the server answers and returns one result."""
    status, body = post_json(server.score_url, {"messages": [{"id": "probe", "text": "my parcel never arrived"}]})
    if status != 200 or not isinstance(body, dict) or len(body.get("results", [])) != 1:
        raise RuntimeError(f"{server.name}: probe request answered {status}: {body!r}")


def run_levels(server: ServerProcess, levels: list[int], texts_file: Path, duration: float, warmup: float,
               seed: int) -> list[dict[str, Any]]:
    """One load run per concurrency level against a started server."""
    runs = []
    for c in levels:
        _log(f"  {server.name}: concurrency {c}, {warmup:g} s warm-up + {duration:g} s")
        r = drive(server, texts_file, c, duration, warmup, seed)
        _log(f"    {r['throughput_rps']:8.1f} req/s  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  "
             f"errors {r['errors']}")
        runs.append(r)
    return runs


def load_levels(server: ServerProcess, levels: list[int], texts_file: Path, duration: float, warmup: float,
                seed: int) -> list[dict[str, Any]]:
    """Start one server, sanity-check one request, then one load run per concurrency level."""
    try:
        with server:
            probe(server)
            return run_levels(server, levels, texts_file, duration, warmup, seed)
    finally:
        if server.proc is not None:
            _log(f"  {server.name}: stopped (exit code {server.proc.returncode})")


def median_runs(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per concurrency level, the median of every figure over the rounds (errors summed)."""
    out = []
    for runs in zip(*rounds):
        merged: dict[str, Any] = dict(runs[0])
        for key in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "client_cpu_cores",
                    "server_cpu_cores", "other_cpu_cores"):
            vals = [r[key] for r in runs if r.get(key) is not None]
            merged[key] = _median(vals) if vals else None
        merged["errors"] = sum(r["errors"] for r in runs)
        merged["requests"] = sum(r["requests"] for r in runs)
        merged["rounds"] = len(runs)
        merged["rounds_throughput_rps"] = [r["throughput_rps"] for r in runs]
        out.append(merged)
    return out


def default_fp32(meta: Any, bundle: Path) -> Path | None:
    """The fp32 reference when ``--fp32-model`` is not given: the fp32 teacher a distilled student
    was built from (``<bundle>.teacher``), else the same weights unconverted (``<bundle>.fp32``,
    ``train --keep-fp32``), when the build left one beside the bundle."""
    from model.bundle import BundleError, read_meta

    dist = meta.metrics.get("distillation") or {}
    candidates = [bundle.parent / (bundle.name + ".fp32")]
    if dist.get("shipped") == "student":
        candidates.insert(0, bundle.parent / str(dist.get("other_bundle") or "-"))  # a sibling directory
    for other in candidates:
        try:
            if (other / "bundle.json").is_file() and read_meta(other).quantization == "none":
                return other
        except BundleError:
            continue
    return None


def _run_sections(args: argparse.Namespace, res: dict[str, Any], bundle: Path, meta: Any, threads: int,
                  records: list[dict[str, Any]], pool: list[str], texts_file: Path, duration: float,
                  warmup: float, batch_rows: int, quick: bool) -> None:
    """The four sections, in order; a section that fails (a server that cannot start, a CLI run
    killed from outside) is recorded as not measured, and the others still run."""
    raw_n, lat_n = (384, 100) if quick else (1024, 300)
    bundles = {"model": bundle}
    if args.fp32_model is not None:
        bundles["fp32"] = args.fp32_model.resolve()
    _log(f"[1/4] raw ONNX Runtime ({', '.join(f'{k}: {p}' for k, p in bundles.items())}), {len(pool)} distinct "
         f"messages in the pool; [2/4] the real server (complaint-triage serve) under the load generator; "
         f"{args.repeat} round(s), raw and service interleaved")
    raw = RawBench(bundles, sample_texts(pool, raw_n, args.seed), sample_texts(pool, lat_n, args.seed + 1), threads)
    server = None if args.no_service else ServerProcess(bundle, log_dir=args.out, name="service", keep_settings=True,
                                                        env=_quiet())
    rounds: list[list[dict[str, Any]]] = []
    try:
        if server is not None:
            try:
                server.start()
                probe(server)
            except RuntimeError as exc:
                _log(f"  service section failed, reported as not measured: {exc}")
                res["service_error"], server = str(exc), None
        for k in range(args.repeat):
            _log(f"  round {k + 1}/{args.repeat}: raw ORT")
            raw.round()
            if server is not None:
                try:
                    rounds.append(run_levels(server, _levels(args.concurrency), texts_file, duration, warmup,
                                             args.seed + k))
                except RuntimeError as exc:
                    _log(f"  service section failed, reported as not measured: {exc}")
                    res["service_error"], server = str(exc), None
    finally:
        if server is not None and server.alive():
            server.stop()
            _log(f"  service: stopped (exit code {server.proc.returncode if server.proc else None})")
        res["raw"] = raw.summary("model")
        if "fp32" in bundles:
            res["raw_fp32"] = raw.summary("fp32")
        raw.close()
    if rounds and "service_error" not in res:
        res["service"] = median_runs(rounds)
    if args.no_service:
        _log("[2/4] service: skipped (--no-service)")

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
    if args.repeat < 1:
        print("tools.bench: --repeat must be >= 1", file=sys.stderr)
        return 2
    if args.fp32_model is None:
        args.fp32_model = default_fp32(meta, bundle)
    if args.fp32_model is not None:
        try:
            read_meta(args.fp32_model)
        except BundleError as exc:
            print(f"tools.bench: --fp32-model: {exc}", file=sys.stderr)
            return 2
    duration = args.duration if args.duration is not None else (5.0 if quick else 20.0)
    warmup = args.warmup if args.warmup is not None else (2.0 if quick else 3.0)
    batch_rows = args.batch_rows if args.batch_rows is not None else (20_000 if quick else 200_000)
    cores = os.cpu_count() or 1
    import onnxruntime

    res: dict[str, Any] = {"meta": {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "bundle": str(bundle),
        "model": f"{meta.name} {meta.version}", "backbone": meta.backbone, "quantization": meta.quantization,
        "cpu_count": cores, "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
        "duration_s": duration, "warmup_s": warmup, "quick": quick, "seed": args.seed, "repeat": args.repeat,
        "fp32_bundle": str(args.fp32_model.resolve()) if args.fp32_model else None,
        "server_settings": {"max_batch": settings.max_batch, "max_batch_tokens": settings.max_batch_tokens,
                            "max_wait_ms": settings.max_wait_ms, "ort_spin": settings.ort_spin,
                            "ort_threads": settings.ort_threads, "max_queue": settings.max_queue,
                            "model_streams": settings.streams,
                            "intra_op_threads": settings.intra_op_threads},
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
