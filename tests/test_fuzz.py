"""Schemathesis against the app's own OpenAPI schema (GET /schema/openapi.json), in process over ASGI.

Every operation is fuzzed with valid and invalid inputs (bodies, types, unknown fields, huge values);
each answer must not be a 5xx and must conform to the published schema (status code declared,
content type, body schema, headers). ``CT_FUZZ_EXAMPLES`` sets the examples per operation
(default 50, ~30 s on 2 cores; ``make fuzz`` runs 2000).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.settings import Settings

EXAMPLES = int(os.environ.get("CT_FUZZ_EXAMPLES", "50"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
SEEN: dict[str, int] = {}


@pytest.fixture(scope="module")
def api_schema(tiny_bundle: Path) -> Any:
    # small limits so that generated batches stay cheap; the schema publishes them (maxItems/maxLength)
    app = create_app(Settings(bundle=tiny_bundle, max_messages=8, max_text_chars=4000, max_body_bytes=256_000,
                              max_batch=8, max_queue=64, ort_threads=1))
    return schemathesis.openapi.from_asgi("/schema/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    response = case.call_and_validate(checks=CHECKS)
    key = f"{case.method} {case.path} {response.status_code}"
    SEEN[key] = SEEN.get(key, 0) + 1


def test_fuzz_reached_the_model() -> None:
    """The run above did score messages (not only 4xx): the generated bodies got past validation."""
    if not SEEN:
        pytest.skip("fuzz test did not run in this session")
    print("schemathesis answers:", dict(sorted(SEEN.items())))
    assert SEEN.get("POST /v1/score 200", 0) > 0, SEEN
    assert any(k.startswith("POST /v1/score 4") for k in SEEN), SEEN
