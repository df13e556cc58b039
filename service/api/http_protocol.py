"""uvicorn's h11 HTTP protocol, hardened: a deadline for request heads and JSON protocol errors.

Why this module exists: uvicorn has no header-read timeout of its own. Its keep-alive timer is
armed only after a response and cancelled by any received byte, so a client that connects and
sends nothing, or trickles its headers one byte at a time (slowloris), holds a connection forever.
The body deadline (408) lives in the app (:mod:`service.api.app`); the head deadline can only live
here, below the ASGI interface. Remove this module when uvicorn gains such a timeout.

Used by ``complaint-triage serve`` (:mod:`service.api.server`); imported lazily so that other commands
do not load uvicorn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import msgspec
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.api.errors import ErrorBody
from service.api.settings import Settings


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (slowloris / idle-connection guard)
    and JSON for its protocol-level 400.

    uvicorn arms its keep-alive timer only after a response and cancels it on any received byte,
    so a connection that sends nothing, or one header byte every few seconds, is kept open forever.
    Here a timer runs from the moment the connection opens and again from the end of every response;
    when it fires, the connection is closed if no new request head has arrived (h11 ``their_state`` is
    still IDLE) or if the response is done but the client is still sending an unread body.
    """

    head_timeout: float = 15.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        if not self.transport.is_closing():
            self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.head_timeout, self._head_expired)

    def _cancel_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a malformed request (bad syntax, head incomplete past 16 KiB), as ErrorBody JSON."""
        body = msgspec.json.encode(ErrorBody(400, f"malformed HTTP request: {msg}"))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        try:
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event) or b"")
        except h11.LocalProtocolError:  # a response was already under way: just drop the connection
            pass
        self.transport.close()

    def _head_expired(self) -> None:
        self._head_timer = None
        stale = self.conn.their_state is h11.IDLE or (self.conn.our_state is h11.DONE
                                                      and self.conn.their_state is not h11.DONE)
        if stale and not self.transport.is_closing():
            self.transport.close()


def protocol_for(settings: Settings) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with this server's head deadline."""
    attrs: dict[str, Any] = {"head_timeout": settings.read_timeout_s}
    return type("GuardedH11Protocol", (GuardedH11Protocol,), attrs)
