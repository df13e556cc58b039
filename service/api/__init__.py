"""The HTTP API: Litestar app factory, errors, auth, micro-batcher, metrics, settings, server.

May import: ``service.contract``, ``service.errors``, ``model/``, Litestar, uvicorn, prometheus-client.
Never ``service.batch`` or ``training`` (a test checks that importing it loads no ``training``).
"""
