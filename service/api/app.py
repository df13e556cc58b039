"""Litestar application: ``create_app(settings)``; the lifespan owns the ONNX session and batcher."""

from __future__ import annotations

import hmac
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, AsyncIterator

import anyio
import msgspec
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import ClientException, HTTPException, NotAuthorizedException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import OpenAPI, Schema
from litestar.params import JSONBody
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from model.bundle import BundleError
from model.labels import labels_dict
from model.scorer import Scorer
from service.api import metrics
from service.api.batcher import MicroBatcher, Overloaded
from service.api.settings import Settings
from service.contract.priority import PriorityConfig, load_config
from service.contract.schemas import ErrorBody, ScoreRequest, ScoreResponse
from service.contract.triage import build_results

log = logging.getLogger("complaint_triage")
MODEL_HEADER = "X-Model-Version"
#: requests with more text than this build their results (language id, priority) in a worker thread:
#: inline, a 4 MB request held the event loop (and /health) for ~1 s
OFFLOAD_CHARS = 50_000
#: JSON-Schema pattern of a non-blank text: one character outside Python's ``str.isspace()`` set
#: (what ``check_limits`` strips). ECMA ``\s`` differs (\x1c-\x1f, \x85, \ufeff), so the set is spelt out.
TEXT_PATTERN = r"[^\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error answers a route can give (all are :class:`ErrorBody` JSON)."""
    reasons = {
        400: "Body is not valid JSON, or a field fails validation (detail and extra name the field)",
        401: "Missing or invalid API key (only when CT_API_KEYS or CT_API_KEYS_FILE is set)",
        408: "The body did not arrive within CT_READ_TIMEOUT_S seconds of the request head",
        413: "Body, message count or text length over the limit (see GET /info limits)",
        415: "Content-Type is not application/json, or the body is compressed",
        503: "Model not loaded yet, queue full, or shutting down; retry after Retry-After seconds",
    }
    return {c: ResponseSpec(ErrorBody, description=reasons[c], generate_examples=False) for c in codes}


@dataclass
class Runtime:
    """What the lifespan loads: scorer, batcher, priority rules."""

    scorer: Scorer
    batcher: MicroBatcher
    priority: PriorityConfig


def api_key_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """401 unless auth is off or the request carries a valid key (constant-time compare)."""
    keys: frozenset[str] = connection.app.state.settings.api_keys
    if not keys:
        return
    given = connection.headers.get("x-api-key", "")
    auth = connection.headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    ok = False
    for key in keys:  # compare against every key so timing does not reveal which one matched
        ok |= hmac.compare_digest(given.encode("utf-8", "replace"), key.encode("utf-8"))
    if not ok:
        metrics.ERRORS.labels("unauthorized").inc()
        raise NotAuthorizedException("missing or invalid API key (send it in the X-API-Key header)")


def _runtime(state: State) -> Runtime:
    rt: Runtime | None = state.get("runtime")
    if rt is None or not state.get("ready"):
        raise HTTPException(status_code=503, detail="model is not loaded yet; retry shortly",
                            headers={"Retry-After": "1"})
    return rt


def check_limits(req: ScoreRequest, settings: Settings) -> None:
    """Reject empty batches, too many messages, and empty or oversized texts, naming the field."""
    n = len(req.messages)
    if n == 0:
        raise ValidationException("messages must hold at least one message",
                                  extra=[{"key": "messages", "message": "empty list"}])
    if n > settings.max_messages:
        raise ClientException(status_code=413, detail=f"too many messages: {n} > limit {settings.max_messages} "
                              "per request; split the batch", extra=[{"key": "messages", "message": "too many"}])
    for i, msg in enumerate(req.messages):
        if not msg.text.strip():
            raise ValidationException(f"messages[{i}].text is empty or whitespace",
                                      extra=[{"key": f"messages[{i}].text", "message": "empty text"}])
        if len(msg.text) > settings.max_text_chars:
            raise ClientException(status_code=413, detail=f"messages[{i}].text has {len(msg.text)} characters; "
                                  f"the limit is {settings.max_text_chars}",
                                  extra=[{"key": f"messages[{i}].text", "message": "text too long"}])


async def _check_content(request: Request[Any, Any, Any]) -> None:
    ctype = request.headers.get("content-type", "")
    if not ctype.split(";")[0].strip().lower() == "application/json":
        raise ClientException(status_code=415, detail=f"Content-Type must be application/json, got {ctype!r}")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ClientException(status_code=415, detail=f"Content-Encoding {encoding!r} is not accepted; "
                              "send an uncompressed JSON body")
    # JSON is UTF-8 (RFC 8259). msgspec raises UnicodeDecodeError, not DecodeError, for invalid UTF-8 inside
    # a string, which Litestar does not map to 400, so it would surface as a 500. The body is read (and
    # cached for the handler) under the request_max_body_size limit, so an oversized body is still a 413.
    timeout = request.app.state.settings.read_timeout_s
    try:
        with anyio.fail_after(timeout):  # a stalled or trickling body must not hold the request forever
            body = await request.body()
    except TimeoutError:
        raise ClientException(status_code=408, detail=f"request body not received within {timeout:g} s",
                              headers={"Connection": "close"}) from None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientException(status_code=400, detail=f"request body is not valid JSON: invalid UTF-8 at byte "
                              f"{exc.start} ({exc.reason})") from None


@post("/v1/score", guards=[api_key_guard], status_code=200, summary="Score customer messages",
      before_request=_check_content,
      responses=_errors(400, 401, 408, 413, 415, 503))
async def score(request: Request[Any, Any, Any], data: JSONBody[ScoreRequest], state: State) -> Response[ScoreResponse]:
    """Score 1..N messages; results come back in input order."""
    received = datetime.now(UTC)
    rt = _runtime(state)
    check_limits(data, state.settings)
    try:
        preds = await rt.batcher.submit([m.text for m in data.messages])
    except Overloaded as exc:
        metrics.ERRORS.labels("overloaded").inc()
        raise HTTPException(status_code=503, detail=f"overloaded: {exc}; retry later",
                            headers={"Retry-After": "1"}) from exc
    meta = rt.scorer.meta
    build = partial(build_results, data.messages, preds, meta.followup_threshold, rt.priority, received_at=received)
    if sum(len(m.text) for m in data.messages) > OFFLOAD_CHARS:
        results = await anyio.to_thread.run_sync(build)  # language id is ~0.35 µs/char: keep the loop free
    else:
        results = build()
    metrics.MESSAGES.inc(len(results))
    for r in results:
        metrics.PREDICTIONS.labels("severity", r.severity).inc()
        metrics.PREDICTIONS.labels("sentiment", r.sentiment).inc()
        metrics.PREDICTIONS.labels("private_followup", str(r.private_followup).lower()).inc()
    if state.settings.log_texts:
        for m, r in zip(data.messages, results):
            log.debug("scored id=%s severity=%s text=%r", m.id, r.severity, m.text)
    return Response(ScoreResponse(meta.name, meta.version, results),
                    headers={MODEL_HEADER: f"{meta.name}/{meta.version}"})


@get("/health", summary="Process is alive", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", summary="Model loaded and warmed up", sync_to_thread=False,
     responses={503: ResponseSpec(dict[str, str], description="Model not loaded yet", generate_examples=False)})
def ready(state: State) -> Response[dict[str, str]]:
    if state.get("ready"):
        return Response({"status": "ready"})
    return Response({"status": "not ready"}, status_code=503, headers={"Retry-After": "1"})


@get("/info", guards=[api_key_guard], summary="Model and limits", sync_to_thread=False, responses=_errors(401, 503))
def info(state: State) -> dict[str, Any]:
    rt = _runtime(state)
    meta, s = rt.scorer.meta, state.settings
    return {"model": meta.name, "version": meta.version, "backbone": meta.backbone, "created_at": meta.created_at,
            "quantization": meta.quantization, "labels": labels_dict(),
            "thresholds": {"private_followup": meta.followup_threshold, "is_complaint": 0.5},
            "max_length_tokens": meta.max_length,
            "limits": {"max_messages": s.max_messages, "max_text_chars": s.max_text_chars,
                       "max_body_bytes": s.max_body_bytes, "max_queue": s.max_queue},
            "batching": {"max_batch": s.max_batch, "max_wait_ms": s.max_wait_ms},
            "business_hours": {"timezone": rt.priority.hours.timezone, "days": list(rt.priority.hours.days),
                               "start": rt.priority.hours.start.isoformat("minutes"),
                               "end": rt.priority.hours.end.isoformat("minutes")}}


class Metrics(PrometheusController):
    """Prometheus exposition (request metrics from the plugin plus ct_* model metrics)."""

    guards = [api_key_guard]

    @get(media_type=MediaType.TEXT, summary="Prometheus metrics (text exposition format)", responses=_errors(401))
    async def get(self) -> Response[str]:  # the plugin's handler is documented as JSON; this is text/plain
        return Response(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})  # type: ignore[arg-type]


def _error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """Every error is JSON {status_code, detail, extra}; unexpected ones are logged, not leaked."""
    if isinstance(exc, HTTPException):
        status, detail, extra = exc.status_code, exc.detail, exc.extra
        cause = exc.__cause__
        if status == 400 and not extra and (isinstance(cause, msgspec.DecodeError)
                                            or isinstance(getattr(cause, "__cause__", None), msgspec.DecodeError)):
            detail = f"request body is not valid JSON: {detail}"
        elif isinstance(exc, RequestEntityTooLarge):  # Litestar's request_max_body_size check
            detail = f"request body is larger than the limit of {request.app.state.settings.max_body_bytes} bytes"
        headers = exc.headers or {}
        if status >= 500 and status != 503:
            metrics.ERRORS.labels("internal").inc()
        elif status < 500 and status not in (401,):
            metrics.ERRORS.labels("bad_request" if status == 400 else f"http_{status}").inc()
    elif isinstance(exc, RecursionError) and "deserializ" in str(exc):
        # msgspec gives up on JSON nested deeper than the recursion limit (e.g. '[' * 1000) with a bare
        # RecursionError, which Litestar does not turn into a 400; no valid ScoreRequest is nested > 4 deep
        metrics.ERRORS.labels("bad_request").inc()
        status, detail, extra, headers = 400, "request body is not valid JSON: nested too deeply", None, {}
    else:
        log.error("unhandled %s on %s", type(exc).__name__, request.url.path)
        metrics.ERRORS.labels("internal").inc()
        status, detail, extra, headers = 500, "internal error", None, {}
    body_extra = extra if isinstance(extra, (list, dict)) else None
    if isinstance(body_extra, dict):  # ErrorBody.extra is documented as string values
        body_extra = {str(k): str(v) for k, v in body_extra.items()}
    elif isinstance(body_extra, list):
        body_extra = [{str(k): str(v) for k, v in e.items()} if isinstance(e, dict) else {"message": str(e)}
                      for e in body_extra]
    return Response(ErrorBody(status, str(detail), body_extra), status_code=status, headers=headers,
                    media_type=MediaType.JSON)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app; the bundle is loaded (and warmed up) by the lifespan, not at import."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            scorer = await anyio.to_thread.run_sync(lambda: Scorer.load(
                settings.bundle, intra_op_threads=settings.ort_threads, batch_size=settings.max_batch,
                spin=settings.ort_spin))
        except BundleError as exc:  # `serve` repeats this after uvicorn's traceback, as the last line
            app.state.startup_error = str(exc)
            raise
        await anyio.to_thread.run_sync(lambda: scorer.predict(["warm-up message"] * 8))
        batcher = MicroBatcher(scorer.predict, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                               max_queue=settings.max_queue)
        batcher.start()
        app.state.runtime = Runtime(scorer, batcher, load_config(settings.priority_config,
                                                                 timezone_name=settings.timezone))
        app.state.ready = True
        log.info("serving %s %s from %s", scorer.meta.name, scorer.meta.version, settings.bundle)
        try:
            yield
        finally:
            app.state.ready = False
            await batcher.close()

    prometheus = PrometheusConfig(app_name="complaint_triage", group_path=True,
                                  exclude=["/metrics", "/health", "/ready"])
    app = Litestar(
        route_handlers=[score, health, ready, info, Metrics],
        lifespan=[lifespan],
        state=State({"settings": settings, "ready": False}),
        middleware=[prometheus.middleware],
        exception_handlers={Exception: _error_handler},
        openapi_config=OpenAPIConfig(title="complaint-triage", version="1.0.0", path="/schema"),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
        # logging is set up by `serve` (level CT_LOG_LEVEL): Litestar's default config would reset the
        # root logger to INFO on startup, so CT_LOG_LEVEL=debug (and CT_LOG_TEXTS) had no effect
        logging_config=None,
    )
    _document_request_limits(app.openapi_schema, settings)
    return app


def _document_request_limits(openapi: OpenAPI, settings: Settings) -> None:
    """Put the limits ``check_limits`` and msgspec enforce into the published request schema.

    Litestar does not emit ``additionalProperties: false`` for ``forbid_unknown_fields`` structs,
    drops ``ge=0`` on optional ints, and cannot know the CT_* limits; clients (and schemathesis)
    would otherwise see unknown fields, empty batches or 1 MB texts as valid.
    """
    schemas = openapi.components.schemas if openapi.components else None
    if not schemas or not {"ScoreRequest", "Message", "Author"} <= set(schemas):
        return
    for name in ("ScoreRequest", "Message", "Author"):
        schemas[name].additional_properties = False
    messages = schemas["ScoreRequest"].properties["messages"]  # type: ignore[index]
    if isinstance(messages, Schema):
        messages.min_items, messages.max_items = 1, settings.max_messages
    text = schemas["Message"].properties["text"]  # type: ignore[index]
    if isinstance(text, Schema):
        text.min_length, text.max_length, text.pattern = 1, settings.max_text_chars, TEXT_PATTERN
    followers = schemas["Author"].properties["followers"]  # type: ignore[index]
    if isinstance(followers, Schema):
        followers.minimum = 0
