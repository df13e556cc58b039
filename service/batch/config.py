"""The batch job's configuration: one frozen :class:`JobConfig`, built and checked from the command line.

Standard library (and the contract's timestamp reader) only: building the CLI parser imports no
model, no pyarrow and no onnxruntime. Precedence of every column setting: the explicit flag, then
``--preset`` (:mod:`service.batch.preset`), then the default.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from service.batch.preset import Preset, load_preset, preset_names
from service.contract.timestamps import TimestampParser
from service.errors import UsageError

FORMATS = ("jsonl", "csv", "parquet")
_EXTENSIONS = {"jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl", "csv": "csv", "parquet": "parquet",
               "pq": "parquet"}
#: output columns besides the scoring contract's (``--keep`` may not reuse them)
RECORD_COLUMNS = ("row", "error")


#: the message fields read from a column each (``--<name>-col``); "" means "not read"
COLUMN_FIELDS = ("text", "id", "channel", "followers", "verified", "promoted", "prior_contacts", "created_at",
                 "customer_key")


@dataclass(frozen=True)
class Columns:
    """Input column names (or dotted paths) for the text and the optional metadata, and which rows to score."""

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
    #: the channel of every row whose channel cell is absent (``--channel``; a file from one platform)
    channel_value: str | None = None
    #: score only rows whose column equals the value (``--where inbound=true``); the others are skipped
    where: tuple[str, str] | None = None


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
    #: strptime format of created_at strings, and the zone of times without an offset (None: UTC)
    created_at_format: str | None = None
    input_timezone: str | None = None
    #: the run exits with status 4 when more than this share of the scored rows are errors
    max_error_rate: float = 0.5
    #: (where it was named, column) for every column the user or the preset named: checked before any work
    named: tuple[tuple[str, str], ...] = ()
    #: skip the column check (a JSONL field that first appears after the sampled head)
    no_column_check: bool = False

    @property
    def timestamps(self) -> TimestampParser:
        """The created_at reader of this job (the same class the HTTP API uses)."""
        return TimestampParser(self.created_at_format, self.input_timezone)
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
        if not self.columns.text:
            raise UsageError("--text-col must name a column: the text is what is scored")
        if not 0 <= self.max_error_rate <= 1:
            raise UsageError(f"--max-error-rate {self.max_error_rate}: must be from 0 to 1 (1 = never fail)")
        try:
            self.timestamps  # noqa: B018 (checks --created-at-format and --input-timezone)
        except ValueError as exc:
            raise UsageError(f"--created-at-format / --input-timezone: {exc}") from None
        if self.engine == "ray" and self.input == "-":
            raise UsageError("--engine ray reads files, not stdin")
        if self.engine == "ray" and self.history:
            raise UsageError("--history counts repeat contacts in arrival order, which needs --engine local "
                             "(Ray scores blocks in parallel)")
        from model.labels import CHANNELS  # here, not at the top: `model` loads onnxruntime
        from service.contract.schemas import Result

        if self.columns.channel_value is not None and self.columns.channel_value not in CHANNELS:
            raise UsageError(f"--channel {self.columns.channel_value!r}: use one of {', '.join(CHANNELS)}")

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
    defaults = Columns()
    for name in COLUMN_FIELDS:
        p.add_argument(f"--{name.replace('_', '-')}-col", dest=f"col_{name}", default=None,
                       help=f"input column (or dotted.path) for {name} (default {getattr(defaults, name)!r}"
                            + ("; '' = do not read)" if name != "text" else ")"))
    p.add_argument("--keep", default=None, help="comma-separated input columns (or dotted paths) to copy to the output")
    p.add_argument("--preset", default=None,
                   help=f"column mapping of a common export ({', '.join(preset_names())}) or a TOML file of your own; "
                        "explicit flags override it")
    p.add_argument("--channel", default=None, help="channel of every row without a channel cell (e.g. twitter)")
    p.add_argument("--where", default=None, help="COL=VALUE: score only these rows (e.g. inbound=true; '' = all)")
    p.add_argument("--created-at-format", default=None,
                   help="strptime format of created_at strings (default: ISO 8601, RFC 2822, Twitter, Unix s/ms, "
                        "unambiguous M/D/YYYY)")
    p.add_argument("--input-timezone", default=None, help="IANA zone of created_at values without an offset (default UTC)")
    p.add_argument("--no-column-check", action="store_true",
                   help="do not check the named columns against the file's head (a JSONL field that first "
                        "appears after row 1000)")
    p.add_argument("--max-error-rate", type=float, default=d.max_error_rate,
                   help="exit 4 when more than this share of the scored rows are errors (default %(default)s)")
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


def _where(spec: str | None, origin: str) -> tuple[str, str] | None:
    if not spec:
        return None
    col, eq, value = spec.partition("=")
    if not eq or not col.strip() or not value.strip():
        raise UsageError(f"{origin} {spec!r}: expected COLUMN=VALUE, e.g. inbound=true")
    return col.strip(), value.strip()


def _columns(args: argparse.Namespace, preset: Preset | None) -> tuple[Columns, tuple[tuple[str, str], ...]]:
    """Columns from the flags over the preset over the defaults, and every column someone named."""
    base, given, named = asdict(Columns()), preset.settings() if preset else {}, []
    origin = f"preset {preset.name}" if preset else ""
    for name in COLUMN_FIELDS:
        flag = getattr(args, f"col_{name}")
        if flag is not None:
            base[name] = flag
            named.append((f"--{name.replace('_', '-')}-col", flag))
        elif name in given.get("columns", {}):
            base[name] = given["columns"][name]
            named.append((f"{origin} ({name})", base[name]))
    if args.keep is not None:
        keep = tuple(dict.fromkeys(c.strip() for c in args.keep.split(",") if c.strip()))
        named += [("--keep", c) for c in keep]
    else:
        keep = tuple(given.get("keep", ()))
        named += [(f"{origin} (keep)", c) for c in keep]
    where = _where(args.where, "--where") if args.where is not None else given.get("where")
    if where:
        named.append(("--where" if args.where is not None else f"{origin} (where)", where[0]))
    channel = args.channel if args.channel is not None else given.get("channel")
    cols = Columns(**{n: base[n] for n in COLUMN_FIELDS}, keep=keep, channel_value=channel or None, where=where)
    return cols, tuple((o, c) for o, c in named if c)


def from_args(args: argparse.Namespace) -> JobConfig:
    """The job the parsed arguments describe; :class:`UsageError` for anything inconsistent."""
    preset = load_preset(args.preset) if args.preset else None
    given = preset.settings() if preset else {}
    columns, named = _columns(args, preset)
    plain = {f.name: getattr(args, f.name) for f in fields(JobConfig)
             if f.name not in ("columns", "input_format", "output_format", "named", "created_at_format",
                               "input_timezone")}
    timestamps = {k: getattr(args, k) if getattr(args, k) is not None else given.get(k)
                  for k in ("created_at_format", "input_timezone")}
    return JobConfig(**plain, **timestamps, columns=columns, named=named,
                     input_format=detect_format(args.input, args.input_format),
                     output_format=detect_format(args.output, args.output_format))
