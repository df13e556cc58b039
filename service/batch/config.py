"""The batch job's configuration: one frozen :class:`JobConfig`, built and checked from the command line.

Standard library (and the contract's field names) only: building the CLI parser imports no model,
no pyarrow and no onnxruntime.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from service.errors import UsageError

FORMATS = ("jsonl", "csv", "parquet")
_EXTENSIONS = {"jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl", "csv": "csv", "parquet": "parquet",
               "pq": "parquet"}
#: output columns besides the scoring contract's (``--keep`` may not reuse them)
RECORD_COLUMNS = ("row", "error")


@dataclass(frozen=True)
class Columns:
    """Input column names for the text and the optional metadata."""

    text: str = "text"
    id: str = "id"
    channel: str = "channel"
    followers: str = "author_followers"
    verified: str = "verified"
    promoted: str = "promoted"
    prior_contacts: str = "prior_contacts"
    created_at: str = "created_at"
    customer_key: str = "customer_key"
    keep: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class JobConfig:
    """Everything one ``complaint-triage score`` run depends on (formats resolved, values checked)."""

    input: str
    output: str
    bundle: str = "artifacts/bundle"
    engine: str = "local"
    input_format: str = "jsonl"
    output_format: str = "jsonl"
    columns: Columns = Columns()
    chunk_rows: int = 8192
    batch_size: int = 32
    max_text_chars: int = 100_000
    threads: int = 0
    priority_config: str | None = None
    timezone: str | None = None
    restart: bool = False
    quiet: bool = False
    actors: int = 2
    cpus_per_actor: int = 1
    read_rows: int = 65_536
    #: deployment complaint rate for the prior correction (None = the bundle's choice)
    complaint_prior: float | None = None
    routing_config: str | None = None
    #: contact-history store (SQLite path or redis:// URL): repeat contacts counted in arrival order
    history: str | None = None
    history_window_days: float = 30.0
    history_retention_days: float = 90.0

    def __post_init__(self) -> None:
        positive = ("chunk_rows", "batch_size", "max_text_chars", "actors", "cpus_per_actor", "read_rows")
        bad = [f"--{n.replace('_', '-')}" for n in positive if getattr(self, n) <= 0]
        if self.threads < 0:
            bad.append("--threads")
        if bad:
            raise UsageError(f"must be positive: {', '.join(bad)} (--threads may be 0 = all cores)")
        if self.engine == "ray" and self.input == "-":
            raise UsageError("--engine ray reads files, not stdin")
        if self.engine == "ray" and self.history:
            raise UsageError("--history counts repeat contacts in arrival order, which needs --engine local "
                             "(Ray scores blocks in parallel)")
        from service.contract.schemas import Result  # here, not at the top: `model` loads onnxruntime

        taken = sorted(set(self.columns.keep) & (set(RECORD_COLUMNS) | set(Result.__struct_fields__)))
        if taken:
            raise UsageError(f"--keep {','.join(taken)}: already output column(s) of the scoring contract; rename "
                             "the input column, or drop it from --keep (the input id is always kept as 'id')")


def detect_format(path: str, given: str | None) -> str:
    """Format from --input-format/--output-format, else from the extension ('-' means JSONL on stdin/stdout)."""
    if given:
        return given
    if path == "-":
        return "jsonl"
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in _EXTENSIONS:
        raise UsageError(f"cannot tell the format of {path!r} from its extension; pass --input-format/--output-format")
    return _EXTENSIONS[suffix]


def add_args(p: argparse.ArgumentParser) -> None:
    """The ``score`` subcommand's flags (defaults are :class:`JobConfig`'s)."""
    d = argparse.Namespace(**{f.name: f.default for f in fields(JobConfig)})  # no instance: nothing imported
    p.add_argument("--input", required=True, help="JSONL, CSV or Parquet file; '-' reads JSONL from stdin")
    p.add_argument("--output", required=True, help="JSONL, CSV or Parquet file ('-' writes JSONL to stdout)")
    p.add_argument("--model", "--bundle", dest="bundle", default=d.bundle)
    p.add_argument("--engine", choices=("local", "ray"), default=d.engine)
    p.add_argument("--input-format", choices=FORMATS, default=None)
    p.add_argument("--output-format", choices=FORMATS, default=None)
    for name, default in asdict(Columns()).items():
        if name != "keep":
            p.add_argument(f"--{name.replace('_', '-')}-col", dest=f"col_{name}", default=default,
                           help=f"input column for {name} (default {default!r})")
    p.add_argument("--keep", default="", help="comma-separated input columns to copy to the output")
    p.add_argument("--chunk-rows", type=int, default=d.chunk_rows, help="rows per durable output part (resume unit)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="model batch size (rows are grouped by length)")
    p.add_argument("--max-text-chars", type=int, default=d.max_text_chars)
    p.add_argument("--threads", type=int, default=d.threads, help="ONNX Runtime intra-op threads (0 = all cores)")
    p.add_argument("--priority-config", default=None, help="priority TOML (default: the shipped rules)")
    p.add_argument("--timezone", default=None, help="business-hours time zone override")
    p.add_argument("--restart", action="store_true", help="discard a previous partial run instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--actors", type=int, default=d.actors, help="Ray: scorer actors")
    p.add_argument("--cpus-per-actor", type=int, default=d.cpus_per_actor, help="Ray: CPUs (and ORT threads) per actor")
    p.add_argument("--complaint-prior", type=float, default=None,
                   help="expected share of complaints in this file's source, corrects P(severity) by Bayes' rule "
                        "(default: the bundle's setting, usually none)")
    p.add_argument("--read-rows", type=int, default=d.read_rows, help="Ray: rows per read task")
    p.add_argument("--routing-config", default=None, help="routing TOML (default: the shipped rules)")
    p.add_argument("--history", default=None,
                   help="contact-history store (SQLite file or redis:// URL; secret: CT_STORE_SECRET, else "
                        "<file>.key): rows with a customer_key count earlier contacts, in arrival order")
    p.add_argument("--history-window-days", type=float, default=d.history_window_days,
                   help="earlier contacts counted within this many days")
    p.add_argument("--history-retention-days", type=float, default=d.history_retention_days,
                   help="contacts older than this many days (by their created_at) are deleted from the store")


def from_args(args: argparse.Namespace) -> JobConfig:
    """The job the parsed arguments describe; :class:`UsageError` for anything inconsistent."""
    names = {f.name: getattr(args, f"col_{f.name}") for f in fields(Columns) if f.name != "keep"}
    keep = tuple(dict.fromkeys(c.strip() for c in args.keep.split(",") if c.strip()))
    plain = {f.name: getattr(args, f.name) for f in fields(JobConfig)
             if f.name not in ("columns", "input_format", "output_format")}
    return JobConfig(**plain, columns=Columns(**names, keep=keep),
                     input_format=detect_format(args.input, args.input_format),
                     output_format=detect_format(args.output, args.output_format))
