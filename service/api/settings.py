"""Service settings from ``CT_*`` environment variables (read by ``Settings.from_env()``,
never at import time). A bad value is a :class:`~service.errors.UsageError` naming the variable."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from service.contract.timestamps import TimestampParser
from service.errors import UsageError

_ON, _OFF = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's names


def flag(text: str) -> bool:
    """An on/off setting: 1/true/yes/on or 0/false/no/off (any case); anything else is refused."""
    low = text.strip().lower()
    if low in _ON or low in _OFF:
        return low in _ON
    raise ValueError(f"expected one of {', '.join(sorted(_ON))} or {', '.join(sorted(_OFF))}")


@dataclass(frozen=True)
class Settings:
    """Every knob of the HTTP service, with production defaults."""

    bundle: Path = Path("artifacts/bundle")
    host: str = "127.0.0.1"
    port: int = 8000
    max_messages: int = 256
    max_text_chars: int = 20_000
    max_body_bytes: int = 4 * 1024 * 1024
    max_batch: int = 64
    #: padded tokens (rows × longest row) per model call: batches are formed by this budget and by
    #: token length, like text-embeddings-inference's max-batch-tokens
    max_batch_tokens: int = 8192
    max_wait_ms: float = 0.0
    max_queue: int = 2048
    #: ORT intra-op threads per model call (0: the cores divided among the model streams)
    ort_threads: int = 0
    #: model threads that run batches side by side on the one ORT session (see service.api.batcher);
    #: 0 = auto: two on a machine with two or more cores, else one (:attr:`streams`)
    model_streams: int = 0
    #: let ORT worker threads busy-wait between ops (faster alone, slower beside the event loop)
    ort_spin: bool = False
    #: ORT's CPU memory arena: keeps activation buffers at their peak size between requests (off:
    #: freed after each batch, lower resident memory)
    ort_mem_arena: bool = False
    #: once the model has been idle this long after a batch, return freed memory to the OS
    #: (glibc malloc_trim; 0 = never)
    idle_trim_ms: float = 500.0
    api_keys: frozenset[str] = field(default_factory=frozenset)
    priority_config: Path | None = None
    timezone: str | None = None
    log_texts: bool = False
    log_level: str = "info"
    graceful_timeout_s: float = 20.0
    #: a client must send each request head within this many seconds of connecting (or of the previous
    #: response), and a /v1/score body within this many seconds of its head: else the connection is
    #: closed (head) or answered 408 (body). Bounds slow or stalled clients (slowloris).
    read_timeout_s: float = 15.0
    #: idle keep-alive connections are closed after this many seconds (uvicorn timeout_keep_alive)
    keep_alive_s: float = 5.0
    #: expected share of complaints in this deployment's traffic: P(severity) is corrected for
    #: it by Bayes' rule (None = the bundle's choice, usually no correction)
    complaint_prior: float | None = None
    #: strptime format for created_at strings (None = the automatic formats of service.contract.timestamps)
    created_at_format: str | None = None
    #: IANA time zone of created_at values without an offset (None = UTC)
    input_timezone: str | None = None
    #: routing rules (None = service/contract/routing.toml)
    routing_config: Path | None = None
    #: contact history + feedback: a SQLite file path, a redis:// URL, or "off"
    store: str = "var/store.sqlite3"
    #: HMAC key for customer keys (None: generated into <store>.key for SQLite; required for Redis)
    store_secret: str | None = field(default=None, repr=False)
    history_window_days: float = 30.0
    store_retention_days: float = 90.0

    def __post_init__(self) -> None:
        positive = ("port", "max_messages", "max_text_chars", "max_body_bytes", "max_batch", "max_batch_tokens",
                    "max_queue")
        bad = [n for n in positive if getattr(self, n) <= 0]
        bad += [n for n in ("max_wait_ms", "ort_threads", "model_streams", "idle_trim_ms") if getattr(self, n) < 0]
        bad += [n for n in ("read_timeout_s", "keep_alive_s", "graceful_timeout_s") if not getattr(self, n) > 0]
        if bad:
            raise UsageError(f"settings must be positive (CT_MAX_WAIT_MS, CT_ORT_THREADS and CT_MODEL_STREAMS "
                             f"may be 0): "
                             f"{', '.join(f'CT_{n.upper()}' for n in bad)}")
        if self.log_level.lower() not in LOG_LEVELS:
            raise UsageError(f"CT_LOG_LEVEL={self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        if self.complaint_prior is not None and not 0 < self.complaint_prior < 1:
            raise UsageError(f"CT_COMPLAINT_PRIOR={self.complaint_prior}: must be between 0 and 1 (exclusive)")
        try:
            self.timestamps  # noqa: B018 (checks CT_CREATED_AT_FORMAT and CT_INPUT_TIMEZONE)
        except ValueError as exc:
            raise UsageError(f"CT_CREATED_AT_FORMAT / CT_INPUT_TIMEZONE: {exc}") from None
        if not self.history_window_days > 0 or not self.store_retention_days > 0:
            raise UsageError("CT_HISTORY_WINDOW_DAYS and CT_STORE_RETENTION_DAYS must be positive")
        if self.max_queue < self.max_messages:
            raise UsageError("CT_MAX_QUEUE must be >= CT_MAX_MESSAGES, or a full request could never be queued")

    @property
    def streams(self) -> int:
        """Model streams the service runs: ``model_streams``, or with 0 (the default) two when the
        machine has two or more cores. Measured on 2 cores with the int8 student (`make bench`,
        README): two single-thread streams served 157 req/s at concurrency 32 against 107 for one
        2-thread stream, and their p50 at concurrency 1 was lower too (15.4 against 17.2 ms)."""
        if self.model_streams:
            return self.model_streams
        return 2 if (os.cpu_count() or 1) >= 2 else 1

    @property
    def intra_op_threads(self) -> int:
        """ORT threads per model call: ``ort_threads``, or with 0 and several model streams, the
        cores shared among them (0 with one stream: ORT's default, one per physical core)."""
        if self.ort_threads or self.streams == 1:
            return self.ort_threads
        return max(1, (os.cpu_count() or 1) // self.streams)

    @property
    def timestamps(self) -> TimestampParser:
        """The created_at reader these settings describe (the batch job's, from the same two knobs)."""
        return TimestampParser(self.created_at_format, self.input_timezone)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``CT_*`` variables; explicit keyword overrides win."""
        env = os.environ if env is None else env
        conv = {"bundle": Path, "host": str, "port": int, "max_messages": int, "max_text_chars": int,
                "max_body_bytes": int, "max_batch": int, "max_batch_tokens": int, "max_wait_ms": float, "max_queue": int,
                "ort_threads": int, "model_streams": int, "ort_spin": flag, "ort_mem_arena": flag, "idle_trim_ms": float, "priority_config": Path, "timezone": str, "log_texts": flag,
                "log_level": str, "graceful_timeout_s": float, "read_timeout_s": float,
                "keep_alive_s": float, "complaint_prior": float, "created_at_format": str, "input_timezone": str,
                "routing_config": Path, "store": str, "store_secret": str, "history_window_days": float,
                "store_retention_days": float}
        values: dict[str, object] = {}
        for name, kind in conv.items():
            raw = env.get(f"CT_{name.upper()}")
            if raw not in (None, ""):
                try:
                    values[name] = kind(raw)
                except ValueError as exc:
                    raise UsageError(f"CT_{name.upper()}={raw!r}: {exc}") from None
        values["api_keys"] = load_api_keys(env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def load_api_keys(env: Mapping[str, str]) -> frozenset[str]:
    """Keys from ``CT_API_KEYS`` (comma-separated) and/or ``CT_API_KEYS_FILE`` (one per line)."""
    keys = {k.strip() for k in env.get("CT_API_KEYS", "").split(",") if k.strip()}
    path = env.get("CT_API_KEYS_FILE")
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"CT_API_KEYS_FILE={path!r}: {exc.strerror or exc}") from None
        keys |= {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}
    return frozenset(keys)
