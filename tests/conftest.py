"""Shared fixtures. The tiny bundle is built once per session at test time (no model files in git)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import build_tiny_bundle

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def scorer(tiny_bundle: Path):  # type: ignore[no-untyped-def]
    from model.scorer import Scorer

    return Scorer.load(tiny_bundle, intra_op_threads=1)


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    return [
        "@SkyWaysAir my bag never arrived in Madrid and nobody answers. 3rd time asking!!",
        "thanks for the quick fix, app works again 👍",
        "Mijn pakket is nog steeds niet bezorgd, ordernummer #A7K-22913. Kunnen jullie even kijken?",
        "Ich kündige sofort, das ist Betrug! Ich gehe zur Verbraucherzentrale.",
        "???",
        "Bonjour, est-ce que vous livrez en Belgique ?",
        "lol the chatbot sent me in a loop for 40 minutes " * 20,
        "¿Dónde está mi reembolso? Ya pasaron 3 semanas.",
    ]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
