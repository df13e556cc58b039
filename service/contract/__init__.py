"""The scoring contract: request/response Structs, the one validator, decisions, priority, language id.

May import: the standard library, msgspec, py3langid and ``model/``. Never ``service.api``,
``service.batch``, ``training`` or a web/file framework: the HTTP API and the batch job both
build on this package, so it cannot depend on either.
"""
