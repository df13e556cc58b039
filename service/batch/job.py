"""``complaint-triage score``: stream a file of messages through the scorer, resumably.

:func:`run` checks everything first (formats, columns, input readable, priority config, bundle:
a :class:`~service.errors.UsageError` before any output exists), then scores the rows not yet in
the part store (:mod:`service.batch.store`), one durable part per chunk, locally or on Ray, and
finally assembles ``OUT``. Bad rows are error records, not failures, until more than
``--max-error-rate`` of them are: then the run still writes ``OUT`` but exits 4
(:class:`~service.errors.TooManyErrors`) with the top reasons. Bad metadata is never an error:
those rows are scored, with ``warnings``.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator

from service.batch.columns import check_columns
from service.batch.config import JobConfig
from service.batch.formats import count_rows, read_rows
from service.batch.store import PartStore, Tally, assemble
from service.errors import Interrupted, TooManyErrors, TriageError, UsageError


def _manifest(job: JobConfig, model_sha: str) -> dict[str, Any]:
    """What makes two runs the same job (a resumed run must match it)."""
    src: dict[str, Any] = {"input": job.input}
    if job.input != "-":
        st = os.stat(job.input)
        src.update(input=str(Path(job.input).resolve()), size=st.st_size, mtime_ns=st.st_mtime_ns)
    return {**src, "input_format": job.input_format, "output_format": job.output_format,
            "columns": asdict(job.columns), "model_sha256": model_sha, "max_text_chars": job.max_text_chars,
            "priority_config": job.priority_config, "timezone": job.timezone,
            "created_at_format": job.created_at_format, "input_timezone": job.input_timezone,
            **({"routing_config": job.routing_config} if job.routing_config else {}),
            **({"history": job.history} if job.history else {})}


def chunked(rows: Iterable[Any], size: int, start: int) -> Iterator[tuple[int, list[tuple[int, Any]]]]:
    """Group raw rows into (first_row_no, [(row_no, raw), ...]) chunks."""
    buf: list[tuple[int, Any]] = []
    first = row_no = start
    for raw in rows:
        buf.append((row_no, raw))
        row_no += 1
        if len(buf) == size:
            yield first, buf
            buf, first = [], row_no
    if buf:
        yield first, buf


def _summary(t: Tally, seconds: float, out: str) -> None:
    """One line (rows, speed, ok / with warnings / errors / skipped), then the reasons by kind."""
    read = t.rows + sum(t.skipped.values())
    skipped = f", {sum(t.skipped.values())} skipped" if t.skipped else ""
    print(f"scored {read} rows in {seconds:.1f} s ({read / max(seconds, 1e-9):.0f} rows/s): "
          f"{t.ok} ok ({t.warned} with warnings), {sum(t.errors.values())} errors{skipped} → {out}", file=sys.stderr)
    for reason, n in t.errors.most_common():
        print(f"  {n:>8}  {reason}", file=sys.stderr)
    for reason, n in t.warnings.most_common():
        print(f"  {n:>8}  warning: {reason} (field ignored)", file=sys.stderr)
    for reason, n in t.skipped.most_common():
        print(f"  {n:>8}  skipped: {reason}", file=sys.stderr)


def check_error_rate(t: Tally, max_rate: float, out: str) -> None:
    """:class:`TooManyErrors` when more than ``max_rate`` of the scored rows are errors."""
    errors = sum(t.errors.values())
    if t.rows and errors / t.rows > max_rate:
        top = "; ".join(f"{n} × {reason}" for reason, n in t.errors.most_common(3))
        raise TooManyErrors(f"{errors} of {t.rows} rows ({errors / t.rows:.0%}) are errors, more than "
                            f"--max-error-rate {max_rate:g}; top reasons: {top}. {out} was written: its 'error' "
                            "column says what went wrong per row")


def run_local(job: JobConfig, store: PartStore, scorer: Any, prio: Any, routing: Any = None,
              history: Any = None) -> int:
    """Score the rows not yet in the store, one durable part per chunk."""
    from tqdm import tqdm

    from service.batch import rows

    done = store.done_rows()
    source = job.input if job.input == "-" else str(Path(job.input).resolve())
    show = not job.quiet and sys.stderr.isatty()
    total = count_rows(job.input, job.input_format) if show else None  # only the progress bar's ETA needs it
    with tqdm(total=total, initial=done, unit="row", disable=not show, dynamic_ncols=True, smoothing=0.1) as bar:
        for first, chunk in chunked(read_rows(job.input, job.input_format, skip=done), job.chunk_rows, done):
            records = rows.score_rows(scorer, prio, chunk, job.columns, job.max_text_chars, job.timestamps,
                                      routing=routing, history=history, source=source)
            store.add(first, records)
            bar.update(len(records))
    return store.done_rows()


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc keeps it otherwise: measured,
    a freed fp32 bundle left RSS at 456 MB instead of 73 MB until ``malloc_trim``)."""
    from model.memory import release_free_memory

    gc.collect()
    release_free_memory()  # a no-op on a C library without malloc_trim


def open_history(job: JobConfig) -> Any:
    """The ``--history`` store (None without the flag); its secret is ``CT_STORE_SECRET`` when set."""
    if not job.history:
        return None
    from service.store import StoreSettings, open_store

    return open_store(StoreSettings(url=job.history, secret=os.environ.get("CT_STORE_SECRET") or None,
                                    window_days=job.history_window_days,
                                    retention_days=job.history_retention_days))


def run(job: JobConfig) -> int:
    """Run the job: 0 on success (error rows included); raises :class:`TriageError` (exit 2 for a
    mistake found before scoring, 1 for a failure during it, 4 for too many error rows, 130 when
    interrupted)."""
    from model.bundle import BundleError
    from model.scorer import Scorer
    from service.contract.priority import load_config
    from service.contract.routing import load_routing

    t0 = time.monotonic()
    if job.input != "-" and not os.access(job.input, os.R_OK):
        raise UsageError(f"cannot read input {job.input!r}")
    check_columns(job)  # the head of the file only: a typo costs well under a second, before the model loads
    prio = load_config(job.priority_config, timezone_name=job.timezone)
    routing = load_routing(job.routing_config)
    history = open_history(job)
    try:  # the one load: files hashed once; Ray actors load their own copy after this check
        scorer = Scorer.load(job.bundle, intra_op_threads=job.threads, batch_size=job.batch_size,
                             complaint_prior=job.complaint_prior)
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    out = Path(job.output if job.output != "-" else f"stdout-{os.getpid()}.jsonl")
    store = PartStore(out, _manifest(job, scorer.meta.files.get("model.onnx", "")), job.restart or job.input == "-")
    try:
        if job.engine == "ray":
            from service.batch.ray_engine import run_ray

            del scorer  # the bundle is checked; every actor loads its own copy
            release_memory()
            run_ray(job, store)
        else:
            run_local(job, store, scorer, prio, routing, history)
            # free the model (weights + ORT arena) before assembling the final file, so the peak is
            # the larger of scoring and assembly, not their sum
            del scorer
            release_memory()
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted after {store.done_rows()} rows; re-run the same command to resume") from None
    except OSError as exc:
        raise TriageError(str(exc)) from None
    finally:
        if history is not None:
            history.close()
    tally = assemble(store, job.output, job.output_format, job.columns.keep)
    _summary(tally, time.monotonic() - t0, job.output)
    check_error_rate(tally, job.max_error_rate, job.output)
    return 0
