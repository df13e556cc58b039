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
