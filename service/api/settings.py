"""Service settings from ``CT_*`` environment variables (read by ``Settings.from_env()``,
never at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


def _bool(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


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
    max_wait_ms: float = 0.0
    max_queue: int = 2048
    ort_threads: int = 0
    #: let ORT worker threads busy-wait between ops (faster alone, slower beside the event loop)
    ort_spin: bool = False
    api_keys: frozenset[str] = field(default_factory=frozenset)
    priority_config: Path | None = None
    timezone: str | None = None
    log_texts: bool = False
    log_level: str = "info"
    workers: int = 1
    graceful_timeout_s: float = 20.0
    #: a client must send each request head within this many seconds of connecting (or of the previous
    #: response), and a /v1/score body within this many seconds of its head: else the connection is
    #: closed (head) or answered 408 (body). Bounds slow or stalled clients (slowloris).
    read_timeout_s: float = 15.0
    #: idle keep-alive connections are closed after this many seconds (uvicorn timeout_keep_alive)
    keep_alive_s: float = 5.0

    def __post_init__(self) -> None:
        positive = ("port", "max_messages", "max_text_chars", "max_body_bytes", "max_batch", "max_queue", "workers")
        bad = [n for n in positive if getattr(self, n) <= 0]
        if self.max_wait_ms < 0 or self.ort_threads < 0:
            bad.append("max_wait_ms/ort_threads")
        bad += [n for n in ("read_timeout_s", "keep_alive_s", "graceful_timeout_s") if not getattr(self, n) > 0]
        if bad:
            raise ValueError(f"settings must be positive: {', '.join(bad)}")
        if self.max_queue < self.max_messages:
            raise ValueError("CT_MAX_QUEUE must be >= CT_MAX_MESSAGES, or a full request could never be queued")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``CT_*`` variables; explicit keyword overrides win."""
        env = os.environ if env is None else env
        conv = {"bundle": Path, "host": str, "port": int, "max_messages": int, "max_text_chars": int,
                "max_body_bytes": int, "max_batch": int, "max_wait_ms": float, "max_queue": int,
                "ort_threads": int, "ort_spin": _bool, "priority_config": Path, "timezone": str, "log_texts": _bool,
                "log_level": str, "workers": int, "graceful_timeout_s": float, "read_timeout_s": float,
                "keep_alive_s": float}
        values: dict[str, object] = {}
        for name, kind in conv.items():
            raw = env.get(f"CT_{name.upper()}")
            if raw not in (None, ""):
                try:
                    values[name] = kind(raw)
                except ValueError as exc:
                    raise ValueError(f"CT_{name.upper()}={raw!r}: {exc}") from exc
        values["api_keys"] = load_api_keys(env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def load_api_keys(env: Mapping[str, str]) -> frozenset[str]:
    """Keys from ``CT_API_KEYS`` (comma-separated) and/or ``CT_API_KEYS_FILE`` (one per line)."""
    keys = {k.strip() for k in env.get("CT_API_KEYS", "").split(",") if k.strip()}
    path = env.get("CT_API_KEYS_FILE")
    if path:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        keys |= {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}
    return frozenset(keys)
