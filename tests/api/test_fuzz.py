"""Schemathesis against the app's own OpenAPI schema (GET /schema/openapi.json), in process over ASGI.

Every operation is fuzzed with schema-valid (positive) and schema-violating (negative) inputs:
bodies, types, unknown fields, huge values, odd headers. Each answer must not be a 5xx and must
conform to the published schema (status code declared, content type, body schema, headers).
``CT_FUZZ_EXAMPLES`` sets the examples per operation and mode (default 50: about 30 s on 2 cores;
``make fuzz`` runs 2000).

The cases come from ``operation.as_strategy()`` under a plain ``@given`` rather than
``schemathesis.pytest.from_fixture``: the lazy fixture loader of schemathesis 4.32.5 reads
``request.node._nodeid``, which pytest 9 no longer has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app
from service.api.settings import Settings

EXAMPLES = int(os.environ.get("CT_FUZZ_EXAMPLES", "50"))
# positive_data_acceptance: schema-valid bodies must score (200), so the published limits are the real ones.
# negative_data_rejection is not enforced: Litestar converts bodies with msgspec strict=False, so lax forms
# such as "created_at": 0.01 (a Unix timestamp) or "prior_contacts": "3" are accepted although the
# schema says date-time / integer.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, positive_data_acceptance]
OPERATIONS = [("POST", "/v1/score"), ("POST", "/v1/feedback"), ("GET", "/health"), ("GET", "/ready"), ("GET", "/info"), ("GET", "/metrics")]
#: (method path status) → count, across the whole module; printed and checked by the last test
SEEN: dict[str, int] = {}


@pytest.fixture(scope="module")
def api_schema(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    # small limits keep generated batches cheap; the schema publishes them (maxItems / maxLength)
    # body cap above the largest schema-valid body (8 x 4000 astral characters as 12-byte JSON escapes)
    app = create_app(Settings(bundle=tiny_bundle, max_messages=8, max_text_chars=4000, max_body_bytes=1_000_000,
                              max_batch=8, max_queue=64, ort_threads=1,
                              store=str(tmp_path_factory.mktemp("store") / "store.sqlite3")))
    return schemathesis.openapi.from_asgi("/schema/openapi.json", app)


def test_every_operation_is_fuzzed(api_schema: Any) -> None:
    published = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert published == set(OPERATIONS)


# negative cases need something to break: only the POSTs take input (the GETs have no parameters)
@pytest.mark.parametrize(("method", "path", "mode"),
                         [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS]
                         + [(m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if m == "POST"], ids=str)
def test_api_conforms_to_its_schema(api_schema: Any, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=EXAMPLES <= 100,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=CHECKS)
        key = f"{method} {path} {response.status_code}"
        SEEN[key] = SEEN.get(key, 0) + 1

    run()


def test_fuzz_reached_the_model() -> None:
    """The run above scored messages (not only 4xx): generated bodies got past validation too."""
    if not SEEN:
        pytest.skip("the fuzz tests did not run in this session")
    print("\nschemathesis requests by answer:", dict(sorted(SEEN.items())), "total", sum(SEEN.values()))
    assert SEEN.get("POST /v1/score 200", 0) > 0, SEEN
    assert any(k.startswith("POST /v1/score 4") for k in SEEN), SEEN
    assert SEEN.get("POST /v1/feedback 201", 0) > 0 and any(k.startswith("POST /v1/feedback 4") for k in SEEN), SEEN
