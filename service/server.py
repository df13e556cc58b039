"""``complaint-triage serve``: run the API under uvicorn (the production ASGI server)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from model.bundle import BundleError, read_meta, verify_files
from service.settings import Settings


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--bundle", dest="bundle", type=Path, default=None, help="bundle dir (CT_BUNDLE)")
    p.add_argument("--host", default=None, help="bind address (CT_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (CT_PORT, default 8000)")


def main(args: argparse.Namespace) -> int:
    """Check the bundle first so a bad one stops the server with a clear message."""
    import uvicorn

    from service.app import create_app

    try:
        settings = Settings.from_env(bundle=args.bundle, host=args.host, port=args.port)
        verify_files(settings.bundle, read_meta(settings.bundle))
    except (BundleError, ValueError, OSError) as exc:
        print(f"complaint-triage: cannot start: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            timeout_graceful_shutdown=settings.graceful_timeout_s, access_log=False,
                            lifespan="on", loop="auto", http="auto")
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 3
