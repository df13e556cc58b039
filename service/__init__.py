"""Serving: the scoring contract (``contract``), the HTTP API (``api``) and the batch job (``batch``),
plus ``errors`` (:class:`~service.errors.TriageError`, the one error base every layer raises).

Arrows run one way: ``api`` and ``batch`` → ``contract`` → ``model``. Nothing here imports
``training`` or ``tools``; ``cli.py`` at the top level is the only module that sees both sides.
"""
