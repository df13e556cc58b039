"""Every HTTP error is the same JSON body, :class:`ErrorBody`; this module builds it.

Contract violations (:class:`~service.contract.validate.ContractError`) become 400/413 with the
field named; Litestar's own errors keep their status; anything unexpected is logged (never the
request's text) and answered with a bare 500.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import ClientException, HTTPException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi import ResponseSpec

from service.api import metrics
from service.contract.validate import ContractError

log = logging.getLogger("complaint_triage")

_REASONS = {
    400: "Body is not valid JSON, or a field fails validation (detail and extra name the field)",
    401: "Missing or invalid API key (only when CT_API_KEYS or CT_API_KEYS_FILE is set)",
    408: "The body did not arrive within CT_READ_TIMEOUT_S seconds of the request head",
    413: "Body, message count or text length over the limit (see GET /info limits)",
    415: "Content-Type is not application/json, or the body is compressed",
    503: "Model not loaded yet, queue full, or shutting down; retry after Retry-After seconds",
}


class ErrorBody(msgspec.Struct):
    """Every 4xx/5xx answer: HTTP status and a reason a human can act on."""

    status_code: int
    detail: str
    extra: list[dict[str, str]] | dict[str, str] | None = None


def documented(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error answers a route can give (all are :class:`ErrorBody` JSON)."""
    return {c: ResponseSpec(ErrorBody, description=_REASONS[c], generate_examples=False) for c in codes}


def client_error(exc: ContractError) -> ClientException:
    """A contract violation as the HTTP error it deserves (400 or 413, the field in ``extra``)."""
    return ClientException(status_code=exc.status, detail=exc.reason, extra=[{"key": exc.key, "message": exc.kind}])


def unavailable(detail: str) -> HTTPException:
    """503 with ``Retry-After``: the model is not loaded yet, the queue is full, or we are stopping."""
    return HTTPException(status_code=503, detail=detail, headers={"Retry-After": "1"})


def _string_extra(extra: Any) -> list[dict[str, str]] | dict[str, str] | None:
    """``ErrorBody.extra`` is documented as string values."""
    if isinstance(extra, dict):
        return {str(k): str(v) for k, v in extra.items()}
    if isinstance(extra, list):
        return [{str(k): str(v) for k, v in e.items()} if isinstance(e, dict) else {"message": str(e)} for e in extra]
    return None


def error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
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
        elif status < 500 and status != 401:
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
    return Response(ErrorBody(status, str(detail), _string_extra(extra)), status_code=status, headers=headers,
                    media_type=MediaType.JSON)
