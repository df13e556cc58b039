"""Server processes for the benchmark: start one on a free loopback port, wait for ``/ready``,
drive it with the load-generator process, and always stop it with SIGTERM.

Standard library only (the load generator and the servers are separate processes).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.api.settings import load_api_keys
from tools.bench_data import ROOT

HOST = "127.0.0.1"  # loopback only


@dataclass(frozen=True)
class Server:
    """A running server process and its base URL."""

    name: str
    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path

    @property
    def score_url(self) -> str:
        return f"{self.base_url}/v1/score"


def free_port() -> int:
    """A port that is free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The caller's environment (``CT_*`` settings included) plus offline/quiet defaults."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("CT_LOG_LEVEL", "warning")
    if "CT_CACHE_DIR" not in env and (ROOT / ".cache").is_dir():
        env["CT_CACHE_DIR"] = str(ROOT / ".cache")  # the converted backbones `make backbone` caches
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback URL we built)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def post_json(url: str, payload: dict[str, Any], timeout: float = 60.0) -> tuple[int, Any]:
    """One POST with a JSON body; returns (status, decoded body or None)."""
    headers = {"content-type": "application/json"}
    keys = sorted(load_api_keys(os.environ))
    if keys:
        headers["x-api-key"] = keys[0]
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return int(exc.code), None


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    """SIGTERM, wait for a graceful exit, SIGKILL only if it does not come."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextmanager
def running(name: str, cmd: list[str], port: int, log: Path, *, env: dict[str, str] | None = None,
            ready_timeout: float = 300.0) -> Iterator[Server]:
    """Start ``cmd`` (which must serve ``GET /ready`` on ``port``), yield once it answers 200,
    and stop it with SIGTERM on the way out, whatever happened."""
    base = f"http://{HOST}:{port}"
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env or child_env())
    try:
        deadline = time.monotonic() + ready_timeout
        while _get(f"{base}/ready") != 200:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} before it was ready:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {ready_timeout:.0f} s:\n{_tail(log)}")
            time.sleep(0.2)
        yield Server(name, proc, base, log)
    finally:
        was_running = proc.poll() is None
        code = stop(proc)
        how = "stopped with SIGTERM" if was_running else "had already exited"
        print(f"  {name}: {how} (exit code {code})", file=sys.stderr)


def service_cmd(bundle: Path, port: int) -> list[str]:
    """The real server, exactly as ``complaint-triage serve`` runs it."""
    return [sys.executable, "-m", "cli", "serve", "--model", str(bundle), "--host", HOST, "--port", str(port)]


def torch_cmd(backbone: str, port: int, threads: int, max_length: int, prefix: str) -> list[str]:
    """The naive transformers-pipeline server (service/bench_torch_server.py)."""
    return [sys.executable, "-m", "tools.bench_torch_server", "--backbone", backbone, "--host", HOST,
            "--port", str(port), "--threads", str(threads), "--max-length", str(max_length), "--prefix", prefix]


def drive(server: Server, texts_file: Path, concurrency: int, duration: float, warmup: float,
          seed: int = 0) -> dict[str, Any]:
    """Run the load-generator process against ``server`` and return its JSON summary."""
    cmd = [sys.executable, "-m", "tools.bench_load", "--url", server.score_url, "--texts", str(texts_file),
           "--concurrency", str(concurrency), "--duration", str(duration), "--warmup", str(warmup),
           "--server-pid", str(server.proc.pid), "--seed", str(seed)]
    out = subprocess.run(cmd, capture_output=True, env=child_env(), timeout=warmup + duration + 300, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed ({out.returncode}):\n{out.stderr.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    if server.proc.poll() is not None:
        raise RuntimeError(f"{server.name} died during the load test:\n{_tail(server.log)}")
    return result
