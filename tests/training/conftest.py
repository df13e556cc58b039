"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import build_tiny_backbone


@pytest.fixture(scope="session")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One random 2-layer backbone (a local Hugging Face directory) for every tiny training run; read only."""
    return build_tiny_backbone(tmp_path_factory.mktemp("backbone") / "tiny-e5")
