"""``complaint-triage serve``: check everything, then run the API under uvicorn (the production ASGI server).

Start-up order: settings (``CT_*``), priority config, bundle (hashed once) and a warm-up batch are
all loaded by :func:`service.api.app.load_runtime` *before* uvicorn binds the port, so a mistake in
any of them ends the command with one line (``complaint-triage serve: cannot start: …``, exit 2)
and no request is ever accepted by a half-configured server.

uvicorn settings taken from :class:`Settings`:

- ``graceful_timeout_s`` → ``timeout_graceful_shutdown``: on SIGTERM/SIGINT, stop accepting, let
  in-flight requests finish (at most this long), then drain the batcher and exit 0.
- ``keep_alive_s`` → ``timeout_keep_alive``: idle keep-alive connections are closed.
- ``read_timeout_s``: the HTTP protocol is uvicorn's h11 one plus a deadline for each request head
  (:class:`service.api.http_protocol.GuardedH11Protocol`), since uvicorn has none: a client that connects and
  sends nothing, or trickles its headers, is disconnected. The body deadline (408) is in the app.
- A malformed request, or a head still incomplete past h11's 16 KiB, gets a 400 ErrorBody JSON
  (uvicorn's own answer is text/plain) and the connection is closed.
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from service.api.settings import Settings
from service.errors import TriageError, UsageError


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--bundle", dest="bundle", type=Path, default=None, help="bundle dir (CT_BUNDLE)")
    p.add_argument("--host", default=None, help="bind address (CT_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (CT_PORT, default 8000)")


def main(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT (exit 0); :class:`TriageError` when it cannot start."""
    import uvicorn

    from model.bundle import BundleError
    from service.api.app import create_app, load_runtime
    from service.api.http_protocol import protocol_for

    try:
        settings = Settings.from_env(bundle=args.bundle, host=args.host, port=args.port)
        logging.basicConfig(level=settings.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
        runtime = load_runtime(settings)
    except (TriageError, BundleError) as exc:
        raise UsageError(f"cannot start: {exc}") from None
    app = create_app(settings, runtime)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                            timeout_graceful_shutdown=settings.graceful_timeout_s, access_log=False,
                            timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
                            lifespan="on", loop="auto", http=protocol_for(settings))
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal into the handler that
    # was installed before it started: with the default one, a clean stop died with status 143 (SIGTERM)
    # or a KeyboardInterrupt traceback. Record it instead, so a graceful stop exits 0.
    stops: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: stops.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    except SystemExit:  # uvicorn exits (status 1 or 3) when the port cannot be bound or the lifespan fails
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise TriageError("cannot start: the port could not be bound or the app did not start (see above)",
                          exit_code=3)
    return 0
