"""``POST /v1/feedback``: an agent's corrected labels for one scored message, kept in the store.

The body is :class:`~service.contract.feedback.FeedbackRequest`; the text is stored only when the
caller sends it (without it the correction is counted but cannot become a training row). Every
corrected head increments ``ct_feedback_corrections_total{head}``. ``complaint-triage feedback
export`` turns the stored rows into training rows.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import anyio
from litestar import Request, post
from litestar.datastructures import State
from litestar.openapi.spec import OpenAPI, OpenAPIType, Schema
from litestar.params import JSONBody

from service.api import metrics
from service.api.auth import api_key_guard
from service.api.errors import client_error, documented, unavailable
from service.api.settings import Settings
from service.contract.feedback import FeedbackRequest, FeedbackResponse, check_feedback, given
from service.contract.langid import detect_language
from service.contract.validate import ContractError
from service.store import FeedbackRecord


def make_feedback_route(check_content: Callable[..., Any], runtime_of: Callable[[State], Any]) -> Any:
    """The route handler (built here so it shares the score route's body checks and runtime lookup)."""

    @post("/v1/feedback", guards=[api_key_guard], status_code=201, summary="Store an agent's corrected labels",
          before_request=check_content, responses=documented(400, 401, 408, 413, 415, 503))
    async def feedback(request: Request[Any, Any, Any], data: JSONBody[FeedbackRequest],
                       state: State) -> FeedbackResponse:
        """Keep the corrected labels (and the text, if sent) of one message."""
        rt = runtime_of(state)
        settings: Settings = state.settings
        try:
            corrected, confirmed = check_feedback(data, max_text_chars=settings.max_text_chars)
        except ContractError as exc:
            raise client_error(exc) from None
        if rt.store is None:
            raise unavailable("feedback needs the store; it is off (CT_STORE=off)")
        language = data.language or (detect_language(data.text) if data.text else None)
        record = FeedbackRecord(message_id=data.message_id, labels=given(data.labels),
                                predicted=given(data.predicted) if data.predicted else None, text=data.text,
                                language=language, channel=data.channel, at=time.time())
        try:
            await anyio.to_thread.run_sync(rt.store.add_feedback, record)
        except Exception as exc:  # a store outage: the caller may retry
            metrics.ERRORS.labels("store").inc()
            raise unavailable(f"feedback store unavailable: {type(exc).__name__}; retry later") from None
        metrics.FEEDBACK.inc()
        for head in corrected:
            metrics.CORRECTIONS.labels(head).inc()
        return FeedbackResponse(message_id=data.message_id, corrected=corrected, confirmed=confirmed,
                                text_kept=data.text is not None)

    return feedback


def document_feedback(openapi: OpenAPI, settings: Settings) -> None:
    """Publish what ``check_feedback`` enforces: at least one label, a non-blank text within the limit."""
    from service.api.app import TEXT_PATTERN

    schemas = openapi.components.schemas if openapi.components else None
    if not schemas or not {"FeedbackRequest", "Labels"} <= set(schemas):
        return
    for name in ("FeedbackRequest", "Labels"):
        schemas[name].additional_properties = False
    schemas["Labels"].min_properties = 1  # the predicted block too: an empty one says nothing
    text = (schemas["FeedbackRequest"].properties or {}).get("text")
    if isinstance(text, Schema):
        for option in text.one_of or [text]:
            if isinstance(option, Schema) and option.type == OpenAPIType.STRING:
                option.min_length, option.max_length, option.pattern = 1, settings.max_text_chars, TEXT_PATTERN
