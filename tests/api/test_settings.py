"""Settings from CT_* variables: conversion, validation (a bad value names its variable), API keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.api.settings import Settings, load_api_keys
from service.errors import UsageError


def test_settings_from_env(tmp_path: Path) -> None:
    s = Settings.from_env({"CT_PORT": "9001", "CT_MAX_BATCH": "16", "CT_API_KEYS": "a, b", "CT_LOG_TEXTS": "1"})
    assert (s.port, s.max_batch, s.api_keys, s.log_texts) == (9001, 16, frozenset({"a", "b"}), True)
    with pytest.raises(UsageError, match="CT_PORT"):
        Settings.from_env({"CT_PORT": "eighty"})
    with pytest.raises(UsageError, match="CT_MAX_QUEUE"):
        Settings(max_queue=10, max_messages=20)


@pytest.mark.parametrize(("env", "needle"), [
    ({"CT_LOG_TEXTS": "ture"}, "CT_LOG_TEXTS='ture'"),  # a typo no longer means "off"
    ({"CT_ORT_THREADS": "-1"}, "CT_ORT_THREADS"),
    ({"CT_MAX_WAIT_MS": "-5"}, "CT_MAX_WAIT_MS"),
    ({"CT_MODEL_STREAMS": "-1"}, "CT_MODEL_STREAMS"),
    ({"CT_MODEL_STREAMS": "two"}, "CT_MODEL_STREAMS='two'"),
    ({"CT_LOG_LEVEL": "loud"}, "CT_LOG_LEVEL='loud'"),
    ({"CT_API_KEYS_FILE": "/no/such/keys"}, "CT_API_KEYS_FILE='/no/such/keys'"),
    ({"CT_INPUT_TIMEZONE": "Mars/Olympus"}, "CT_INPUT_TIMEZONE"),
    ({"CT_CREATED_AT_FORMAT": "mm/dd/yyyy"}, "CT_CREATED_AT_FORMAT"),
])
def test_bad_settings_are_refused_naming_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(UsageError, match=re.escape(needle)):
        Settings.from_env(env)


def test_model_streams_share_the_cores_unless_threads_are_set() -> None:
    import os

    cores = os.cpu_count() or 1
    auto = Settings.from_env({})
    assert auto.model_streams == 0 and auto.streams == (2 if cores >= 2 else 1)  # 0 = auto
    assert auto.intra_op_threads == (max(1, cores // 2) if cores >= 2 else 0)
    one = Settings.from_env({"CT_MODEL_STREAMS": "1"})
    assert one.streams == 1 and one.intra_op_threads == 0  # one stream: ORT's default
    assert Settings.from_env({"CT_MODEL_STREAMS": "2"}).intra_op_threads == max(1, cores // 2)
    assert Settings.from_env({"CT_MODEL_STREAMS": str(4 * cores)}).intra_op_threads == 1
    assert Settings.from_env({"CT_MODEL_STREAMS": "2", "CT_ORT_THREADS": "3"}).intra_op_threads == 3


def test_flags_accept_the_documented_spellings() -> None:
    for on in ("1", "true", "YES", "on"):
        assert Settings.from_env({"CT_ORT_SPIN": on}).ort_spin is True
    for off in ("0", "false", "No", "off"):
        assert Settings.from_env({"CT_LOG_TEXTS": off}).log_texts is False


def test_api_keys_from_variable_and_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# comment\nk-one\n  k-two  \n\n")
    assert load_api_keys({"CT_API_KEYS": "a, b,", "CT_API_KEYS_FILE": str(keys)}) == {"a", "b", "k-one", "k-two"}


def test_routing_and_store_settings_from_env(tmp_path: Path) -> None:
    s = Settings.from_env({"CT_ROUTING_CONFIG": "r.toml", "CT_STORE": "redis://h:6379/1", "CT_STORE_SECRET": "x" * 20,
                           "CT_HISTORY_WINDOW_DAYS": "14", "CT_STORE_RETENTION_DAYS": "60"})
    assert (s.routing_config, s.store, s.history_window_days, s.store_retention_days) == (
        Path("r.toml"), "redis://h:6379/1", 14.0, 60.0)
    assert "x" * 20 not in repr(s)  # the secret never reaches a log line through repr
    assert Settings.from_env({}).store == "var/store.sqlite3"
    with pytest.raises(UsageError, match="CT_HISTORY_WINDOW_DAYS"):
        Settings.from_env({"CT_HISTORY_WINDOW_DAYS": "-1"})
    with pytest.raises(UsageError, match="CT_STORE_RETENTION_DAYS='forever'"):
        Settings.from_env({"CT_STORE_RETENTION_DAYS": "forever"})
