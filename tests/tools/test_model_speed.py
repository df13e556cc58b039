"""tools.model_speed on the tiny bundle: one process, ratios against the first bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.model_speed import main


def test_speed_table_of_two_bundles(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "speed.json"
    assert main([str(tiny_bundle), str(tiny_bundle), "--rounds", "1", "--single", "3", "--batch", "16",
                 "--threads", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 2 and rows[0]["bs1_ratio"] == 1.0 and rows[0]["max_abs_logit_diff"] == 0.0
    assert rows[1]["max_abs_logit_diff"] == 0.0 and rows[1]["best_batch"] in (8, 16, 32, 64)
    assert all(r["bs1_msgs_per_s"] > 0 and r["best_msgs_per_s"] > 0 for r in rows)
    assert "| msg/s bs=1 |" in capsys.readouterr().out


def test_not_a_bundle_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path)])
    assert exc.value.code == 2
