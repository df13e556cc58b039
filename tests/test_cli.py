"""The composition root: every subcommand reports a user mistake the same way, in one line, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli import main as cli_main
from tests.conftest import ROOT


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "text": "my parcel never arrived"}\n')
    return path


def test_bad_timezone_is_one_line_and_exit_2_in_every_subcommand(tiny_bundle: Path, src: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert cli_main(["score", "--input", str(src), "--output", str(out), "--model", str(tiny_bundle),
                     "--timezone", "Mars/Olympus"]) == 2
    err = capsys.readouterr().err
    assert err == ("complaint-triage score: business-hours time zone: unknown time zone 'Mars/Olympus' "
                   "(use an IANA name such as Europe/London)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # checked before any output exists
    monkeypatch.setenv("CT_TIMEZONE", "Mars/Olympus")
    assert cli_main(["serve", "--model", str(tiny_bundle)]) == 2  # refused before uvicorn starts
    assert capsys.readouterr().err.startswith(
        "complaint-triage serve: cannot start: business-hours time zone: unknown time zone 'Mars/Olympus'")


@pytest.mark.parametrize(("argv", "needle"), [
    (["score", "--input", "{src}", "--output", "{tmp}/out.jsonl", "--model", "{tmp}/no-bundle"],
     "complaint-triage score: bundle directory not found"),
    (["score", "--input", "{src}", "--output", "{tmp}/out.jsonl", "--chunk-rows", "0"],
     "complaint-triage score: must be positive: --chunk-rows"),
    (["score", "--input", "-", "--output", "{tmp}/out.jsonl", "--engine", "ray"],
     "complaint-triage score: --engine ray reads files, not stdin"),
    (["score", "--input", "{src}", "--output", "{tmp}/out.jsonl", "--priority-config", "{tmp}/none.toml"],
     "complaint-triage score: priority config"),
    (["serve", "--model", "{tmp}/no-bundle"], "complaint-triage serve: cannot start: bundle directory not found"),
    (["score", "--input", "{src}", "--output", "{tmp}/out.jsonl", "--routing-config", "{tmp}/none.toml"],
     "complaint-triage score: routing config "),
    (["score", "--input", "{src}", "--output", "{tmp}/out.jsonl", "--engine", "ray", "--history", "{tmp}/h.db"],
     "complaint-triage score: --history counts repeat contacts in arrival order, which needs --engine local"),
    (["score", "--input", "{src}", "--output", "{tmp}/out.jsonl", "--history", "{tmp}/h.db",
      "--history-window-days", "30", "--history-retention-days", "7"],
     "complaint-triage score: retention (7 days) is shorter than the history window (30 days)"),
    (["feedback", "export", "--output", "{tmp}/rows.jsonl", "--store", "{tmp}/no-store.sqlite3"],
     "complaint-triage feedback: no store at"),
    (["evaluate", "--model", "{tmp}/no-bundle", "--data", "{tmp}/none.jsonl"],
     "complaint-triage evaluate: data path not found"),
    (["data-stats", "--corpus", "{tmp}/no-corpus"], "complaint-triage data-stats: data path not found"),
    (["train", "--epochs", "0", "--output-dir", "{tmp}/b"], "complaint-triage train: invalid training config"),
    (["backbone", "{tmp}"], "complaint-triage backbone: "),
])
def test_user_mistakes_exit_2_with_one_line(argv: list[str], needle: str, src: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CT_TIMEZONE", raising=False)
    argv = [a.format(src=src, tmp=tmp_path) for a in argv]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(needle) and err.count("\n") == 1, err


def test_no_traceback_from_a_real_process(tiny_bundle: Path, src: Path, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "cli", "score", "--input", str(src), "--output",
                          str(tmp_path / "o.jsonl"), "--model", str(tiny_bundle), "--timezone", "Nowhere/Land"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [
        "complaint-triage score: business-hours time zone: unknown time zone 'Nowhere/Land' "
        "(use an IANA name such as Europe/London)"]


def test_serve_refuses_bad_routing_and_store_settings_with_the_reason(tiny_bundle: Path, tmp_path: Path) -> None:
    """A real process: one line naming the problem, exit 2, before the port is bound."""
    from service.contract.routing import DEFAULT_ROUTING

    rules = tmp_path / "routing.toml"
    rules.write_text(DEFAULT_ROUTING.read_text().replace('queue = "social"', 'queue = "vip"'))
    (tmp_path / "store-is-a-dir").mkdir()
    cases = [({"CT_ROUTING_CONFIG": str(rules)},
              f"complaint-triage serve: cannot start: routing config {rules}: rule 4 ('public complaint'): "
              "unknown queue 'vip' (defined: general, social, escalations)"),
             ({"CT_STORE": str(tmp_path / "store-is-a-dir")}, "complaint-triage serve: cannot start: history store "),
             ({"CT_STORE": "redis://127.0.0.1:6390/0"},
              "complaint-triage serve: cannot start: a Redis history store needs CT_STORE_SECRET"),
             ({"CT_STORE": "redis://127.0.0.1:1/0", "CT_STORE_SECRET": "s" * 20},
              "complaint-triage serve: cannot start: history store redis://127.0.0.1:1/0: Error 111"),
             ({"CT_HISTORY_WINDOW_DAYS": "0"}, "complaint-triage serve: cannot start: CT_HISTORY_WINDOW_DAYS")]
    import os

    for extra, want in cases:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")} | {"CT_PORT": "8999", **extra}
        res = subprocess.run([sys.executable, "-m", "cli", "serve", "--model", str(tiny_bundle)], env=env,
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.strip().splitlines()[-1].startswith(want), res.stderr
