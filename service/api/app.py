"""Litestar application: ``create_app(settings)``.

Everything the app needs is loaded and checked by :func:`load_runtime` before it takes traffic:
the priority config (cheap, so first), then the bundle (its files hashed once, by ``Scorer.load``),
then a warm-up batch. ``complaint-triage serve`` calls it before uvicorn binds the port, so a bad
setting, config or bundle stops the server with one clear line; tests let the lifespan call it.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, lru_cache, partial
from typing import Any, AsyncIterator

import anyio
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import OpenAPI, Schema
from litestar.params import JSONBody
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from model.labels import labels_dict
from model.scorer import Predictions, Scorer
from service.api import metrics
from service.api.auth import api_key_guard
from service.api.batcher import Job, MicroBatcher, Overloaded, overhead_tokens
from service.api.errors import client_error, documented, error_handler, unavailable
from service.api.feedback import document_feedback, make_feedback_route
from service.api.settings import Settings
from service.contract.langid import detect_language
from service.contract.priority import PriorityConfig, load_config
from service.contract.routing import RoutingConfig, load_routing
from service.contract.schemas import Message, ScoreRequest, ScoreResponse
from service.contract.triage import Thresholds, build_results, bundle_thresholds
from service.contract.validate import ContractError, check_request
from service.store import Contact, Store, StoreSettings, open_store

log = logging.getLogger("complaint_triage")
MODEL_HEADER = "X-Model-Version"
#: status logged for a request whose client disconnected before it was scored (nginx's 499: never sent)
CLIENT_GONE = 499
#: requests with more text than this build their results (language id, priority) in a worker thread:
#: inline, a 4 MB request held the event loop (and /health) for ~1 s
OFFLOAD_CHARS = 50_000
#: JSON-Schema pattern of a non-blank text: one character outside Python's ``str.isspace()`` set
#: (what ``check_text`` strips). ECMA ``\s`` differs (\x1c-\x1f, \x85, \ufeff), so the set is spelt out.
TEXT_PATTERN = r"[^\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


@dataclass(frozen=True)
class Runtime:
    """What the app scores with, loaded and checked before the first request."""

    scorer: Scorer
    priority: PriorityConfig
    thresholds: Thresholds
    routing: RoutingConfig | None = None
    store: Store | None = None  # contact history + feedback; None when CT_STORE=off

    @property
    def model_name(self) -> str:
        return self.scorer.meta.name

    @property
    def model_version(self) -> str:
        return self.scorer.meta.version

    @cached_property
    def headers(self) -> dict[str, str]:
        """Response headers every /v1/score answer carries (built once)."""
        return {MODEL_HEADER: f"{self.scorer.meta.name}/{self.scorer.meta.version}"}


def open_settings_store(settings: Settings) -> Store | None:
    """The store ``CT_STORE`` names (None for ``off``); :class:`~service.errors.UsageError` when it cannot open."""
    if settings.store.strip().lower() in ("off", "none", ""):
        return None
    return open_store(StoreSettings(url=settings.store, secret=settings.store_secret,
                                    window_days=settings.history_window_days,
                                    retention_days=settings.store_retention_days))


def load_runtime(settings: Settings) -> Runtime:
    """Priority and routing configs, the store, then the bundle (hashed once), then a warm-up batch;
    raises :class:`~service.errors.UsageError` or ``BundleError`` with the reason."""
    priority = load_config(settings.priority_config, timezone_name=settings.timezone)
    routing = load_routing(settings.routing_config)
    store = open_settings_store(settings)
    scorer = Scorer.load(settings.bundle, intra_op_threads=settings.intra_op_threads, batch_size=settings.max_batch,
                         spin=settings.ort_spin, complaint_prior=settings.complaint_prior,
                         mem_arena=settings.ort_mem_arena)
    scorer.predict(["warm-up message"] * 8)
    # py3langid loads (unzips) its model on first use: at start-up, not on the first request's event loop
    detect_language("warm-up message for the language identifier")
    return Runtime(scorer, priority, bundle_thresholds(scorer.meta), routing, store)


async def count_history(rt: Runtime, messages: list[Message], received: datetime) -> list[int | None] | None:
    """Earlier contacts per message with a ``customer_key`` (recording this one); None when there is
    nothing to look up, or the store failed (scoring goes on without history: counted in metrics)."""
    if rt.store is None or not any(m.customer_key for m in messages):
        return None
    keyed = [i for i, m in enumerate(messages) if m.customer_key]
    contacts = [Contact(key=messages[i].customer_key or "", channel=messages[i].channel,
                        at=messages[i].created_at or received, ref=messages[i].id) for i in keyed]
    try:
        counts = await anyio.to_thread.run_sync(rt.store.count_and_record, contacts)
    except Exception:  # a store outage must not stop scoring; the operator sees it in the metric and the log
        metrics.HISTORY.labels("error").inc()
        log.exception("contact history unavailable; scoring without it")
        return None
    metrics.HISTORY.labels("ok").inc(len(keyed))
    out: list[int | None] = [None] * len(messages)
    for i, n in zip(keyed, counts):
        out[i] = n
    return out


def _runtime(state: State) -> Runtime:
    rt: Runtime | None = state.get("runtime")
    if rt is None or not state.get("ready"):
        raise unavailable("model is not loaded yet; retry shortly")
    return rt


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
      responses=documented(400, 401, 408, 413, 415, 503))
async def score(request: Request[Any, Any, Any], data: JSONBody[ScoreRequest], state: State) -> Response[ScoreResponse]:
    """Score 1..N messages; results come back in input order."""
    received = datetime.now(UTC)
    rt = _runtime(state)
    settings: Settings = state.settings
    try:  # Litestar has converted the body into ScoreRequest (msgspec, lax): the rest of the one validator
        messages = check_request(data, max_messages=settings.max_messages, max_text_chars=settings.max_text_chars,
                                 timestamps=settings.timestamps)
    except ContractError as exc:
        raise client_error(exc) from None
    batcher: MicroBatcher = state.batcher
    ahead = batcher.queued
    try:
        job = await batcher.enqueue([m.text for m in messages])
    except Overloaded as exc:
        metrics.ERRORS.labels("overloaded").inc()
        raise unavailable(f"overloaded: {exc}; retry later") from exc
    # behind a full batch or more, watch the connection: if the client goes, its messages are dropped
    # before they reach the model (not worth a watcher task when the next batch takes it anyway)
    preds = await (_wait_unless_gone(request, batcher, job) if ahead >= batcher.max_batch else batcher.wait(job))
    if preds is None:
        metrics.ERRORS.labels("client_gone").inc()
        return Response(ScoreResponse(rt.model_name, rt.model_version, []), status_code=CLIENT_GONE)
    meta = rt.scorer.meta
    history = await count_history(rt, messages, received)
    build = partial(build_results, messages, preds, rt.thresholds, rt.priority, received_at=received,
                    routing=rt.routing, history=history)
    if sum(len(m.text) for m in messages) > OFFLOAD_CHARS:
        results = await anyio.to_thread.run_sync(build)  # language id is ~0.35 µs/char: keep the loop free
    else:
        results = build()
    metrics.MESSAGES.inc(len(results))
    counters = _prediction_counters()
    for r in results:
        for head, label in (("severity", r.severity), ("sentiment", r.sentiment),
                            ("private_followup", r.private_followup)):
            if label is not None:  # None: a head this bundle did not train
                counters[head, label].inc()
        if r.route is not None:
            metrics.ROUTES.labels(r.route.queue, r.route.channel).inc()
    if settings.log_texts:
        for m, r in zip(messages, results):
            log.debug("scored id=%s severity=%s text=%r", m.id, r.severity, m.text)
    return Response(ScoreResponse(meta.name, meta.version, results), headers=rt.headers)


async def _disconnected(request: Request[Any, Any, Any]) -> None:
    """Returns when the client has closed the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _wait_unless_gone(request: Request[Any, Any, Any], batcher: MicroBatcher, job: Job) -> Predictions | None:
    """The job's predictions, or None (and its queued messages dropped) if the client disconnects first."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((job.future, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if job.future.done():
        return job.future.result()
    batcher.cancel(job)
    return None


@lru_cache(maxsize=1)
def _prediction_counters() -> dict[tuple[str, Any], Any]:
    """The ct_predictions_total children, looked up once (``labels()`` takes a lock per call)."""
    from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS

    out: dict[tuple[str, Any], Any] = {("severity", v): metrics.PREDICTIONS.labels("severity", v) for v in SEVERITY_LABELS}
    out |= {("sentiment", v): metrics.PREDICTIONS.labels("sentiment", v) for v in SENTIMENT_LABELS}
    out |= {("private_followup", v): metrics.PREDICTIONS.labels("private_followup", str(v).lower())
            for v in (True, False)}
    return out


@get("/health", summary="Process is alive", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", summary="Model loaded and warmed up", sync_to_thread=False,
     responses={503: ResponseSpec(dict[str, str], description="Model not loaded yet", generate_examples=False)})
def ready(state: State) -> Response[dict[str, str]]:
    if state.get("ready"):
        return Response({"status": "ready"})
    return Response({"status": "not ready"}, status_code=503, headers={"Retry-After": "1"})


@get("/info", guards=[api_key_guard], summary="Model and limits", sync_to_thread=False,
     responses=documented(401, 503))
def info(state: State) -> dict[str, Any]:
    rt = _runtime(state)
    meta, s, hours = rt.scorer.meta, state.settings, rt.priority.hours
    return {"model": meta.name, "version": meta.version, "backbone": meta.backbone, "created_at": meta.created_at,
            "quantization": meta.quantization, "labels": labels_dict(),
            "thresholds": {"private_followup": rt.thresholds.private_followup, "is_complaint": rt.thresholds.complaint},
            "untrained_heads": meta.untrained_heads,
            "max_length_tokens": meta.max_length,
            "limits": {"max_messages": s.max_messages, "max_text_chars": s.max_text_chars,
                       "max_body_bytes": s.max_body_bytes, "max_queue": s.max_queue},
            "batching": {"max_batch": s.max_batch, "max_batch_tokens": s.max_batch_tokens,
                         "max_wait_ms": s.max_wait_ms, "model_streams": s.streams,
                         "intra_op_threads": s.intra_op_threads,
                         "overhead_tokens": state.batcher.overhead},
            "business_hours": {"timezone": hours.timezone, "days": list(hours.days),
                               "start": hours.start.isoformat("minutes"), "end": hours.end.isoformat("minutes")},
            "routing": _routing_info(rt.routing),
            "history": {"store": "off" if rt.store is None else "redis" if "redis" in type(rt.store).__name__.lower()
                        else "sqlite", "window_days": s.history_window_days,
                        "retention_days": s.store_retention_days}}


def _routing_info(cfg: RoutingConfig | None) -> dict[str, Any]:
    from service.contract.routing import default_routing

    cfg = cfg or default_routing()
    return {"default_queue": cfg.default_queue, "default_channel": cfg.default_channel,
            "queues": {q.name: {"sla_minutes": q.sla_minutes, "hours": q.describe()} for q in cfg.queues.values()},
            "rules": [r.name for r in cfg.rules]}


class Metrics(PrometheusController):
    """Prometheus exposition (request metrics from the plugin plus ct_* model metrics)."""

    guards = [api_key_guard]

    @get(media_type=MediaType.TEXT, summary="Prometheus metrics (text exposition format)", responses=documented(401))
    async def get(self) -> Response[str]:  # the plugin's handler is documented as JSON; this is text/plain
        return Response(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})  # type: ignore[arg-type]


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Litestar:
    """Build the app. With ``runtime`` (what ``serve`` loaded before binding the port) the lifespan
    only starts the micro-batcher; without it, the lifespan loads one with :func:`load_runtime`."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        rt = runtime or await anyio.to_thread.run_sync(load_runtime, settings)
        batcher = MicroBatcher.for_scorer(rt.scorer, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                                          max_batch_tokens=settings.max_batch_tokens, max_queue=settings.max_queue,
                                          idle_trim_ms=settings.idle_trim_ms, streams=settings.streams,
                                          overhead_tokens=overhead_tokens(settings.intra_op_threads))
        batcher.start()
        app.state.runtime, app.state.batcher, app.state.ready = rt, batcher, True
        log.info("serving %s %s from %s", rt.scorer.meta.name, rt.scorer.meta.version, settings.bundle)
        try:
            yield
        finally:
            app.state.ready = False
            await batcher.close()
            if rt.store is not None:
                rt.store.close()

    prometheus = PrometheusConfig(app_name="complaint_triage", group_path=True,
                                  exclude=["/metrics", "/health", "/ready"])
    app = Litestar(
        route_handlers=[score, make_feedback_route(_check_content, _runtime), health, ready, info, Metrics],
        lifespan=[lifespan],
        state=State({"settings": settings, "ready": False}),
        middleware=[prometheus.middleware],
        exception_handlers={Exception: error_handler},
        openapi_config=OpenAPIConfig(title="complaint-triage", version="1.0.0", path="/schema"),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
        # logging is set up by `serve` (level CT_LOG_LEVEL): Litestar's default config would reset the
        # root logger to INFO on startup, so CT_LOG_LEVEL=debug (and CT_LOG_TEXTS) had no effect
        logging_config=None,
    )
    _document_request_limits(app.openapi_schema, settings)
    document_feedback(app.openapi_schema, settings)
    return app


def _document_request_limits(openapi: OpenAPI, settings: Settings) -> None:
    """Put the limits ``check_request`` and msgspec enforce into the published request schema.

    Litestar does not emit ``additionalProperties: false`` for ``forbid_unknown_fields`` structs,
    drops ``ge=0`` on optional ints, and cannot know the CT_* limits; clients (and schemathesis)
    would otherwise see unknown fields, empty batches or 1 MB texts as valid.
    """
    schemas = openapi.components.schemas if openapi.components else None
    if not schemas or not {"ScoreRequest", "MessageIn"} <= set(schemas):
        return
    for name in ("ScoreRequest", "MessageIn"):
        schemas[name].additional_properties = False
    messages = schemas["ScoreRequest"].properties["messages"]  # type: ignore[index]
    if isinstance(messages, Schema):
        messages.min_items, messages.max_items = 1, settings.max_messages
    text = schemas["MessageIn"].properties["text"]  # type: ignore[index]
    if isinstance(text, Schema):
        text.min_length, text.max_length, text.pattern = 1, settings.max_text_chars, TEXT_PATTERN
