"""The one server harness of the tools and tests: a server process on a free loopback port.

``ServerProcess`` starts ``complaint-triage serve`` (or any command serving ``GET /ready``, such as
the torch baseline) with stdout/stderr in log files, waits until ``/ready`` answers 200, and always
stops it with SIGTERM (SIGKILL only if it does not exit). Used by the benchmark, the soak test and
the hostile-client tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tools.corpus import ROOT
from tools.load import get_status
from tools.measure import rss_bytes

HOST = "127.0.0.1"  # loopback only


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def child_env(*, keep_settings: bool = True, **extra: str) -> dict[str, str]:
    """The caller's environment plus offline/quiet defaults. ``keep_settings=False`` drops the caller's
    ``CT_*`` server settings (not ``CT_CACHE_DIR``) so a test server is configured only by ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if keep_settings or not k.startswith("CT_") or k == "CT_CACHE_DIR"}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if "CT_CACHE_DIR" not in env and (ROOT / ".cache").is_dir():
        env["CT_CACHE_DIR"] = str(ROOT / ".cache")  # the converted backbones `make backbone` caches
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def serve_cmd(bundle: str | Path) -> Callable[[int], list[str]]:
    """The real server, exactly as ``complaint-triage serve`` runs it."""
    return lambda port: [sys.executable, "-m", "cli", "serve", "--model", str(bundle), "--host", HOST,
                         "--port", str(port)]


class ServerProcess:
    """A server in a child process on loopback; use as a context manager (stopped on exit).

    ``cmd`` builds the command line for a port (default: ``complaint-triage serve --model bundle``);
    ``env`` holds ``CT_*`` settings; the caller's own ``CT_*`` settings are passed on only with
    ``keep_settings=True`` (the benchmark measures the server as configured; tests stay reproducible).
    """

    def __init__(self, bundle: str | Path | None = None, *, log_dir: str | Path, env: dict[str, str] | None = None,
                 port: int | None = None, cmd: Callable[[int], Sequence[str]] | None = None, name: str = "server",
                 keep_settings: bool = False) -> None:
        if cmd is None and bundle is None:
            raise ValueError("give the bundle to serve, or the command to run")
        self.name = name
        self.port = port or free_port()
        self.cmd = list((cmd or serve_cmd(bundle or ""))(self.port))
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.log_dir / f"{name}-{self.port}.out"
        self.stderr_path = self.log_dir / f"{name}-{self.port}.err"
        self.env = child_env(keep_settings=keep_settings, **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def score_url(self) -> str:
        return f"{self.url}/v1/score"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, wait_ready: bool = True, timeout: float = 300.0) -> ServerProcess:
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=err, env=self.env, cwd=ROOT)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Poll ``/ready`` until 200; RuntimeError with the log's tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was ready:\n"
                                   f"{self.logs()[-3000:]}")
            if get_status(f"{self.url}/ready") == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.logs()[-3000:]}")

    def rss(self) -> int:
        """Resident set size of the server process in bytes."""
        return rss_bytes(self.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait; SIGKILL after ``timeout``. Returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)

    def logs(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        parts = [p.read_text("utf-8", "replace") for p in (self.stdout_path, self.stderr_path) if p.exists()]
        return "\n".join(parts)

    def __enter__(self) -> ServerProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            self.stop()
