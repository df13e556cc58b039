"""Contact history and agent feedback, kept by the service: SQLite by default, Redis for replicas.

Only keyed hashes (HMAC-SHA256) of customer keys and message ids are stored, with the channel
and the time; never a message text. Feedback rows hold the corrected labels and, only when the
caller sent it, the text. :func:`open_store` picks the backend from a URL or path.

May import: the standard library, ``redis`` (only for ``redis://`` URLs) and, for the export,
``service.contract.feedback``; never ``model``,
``service.api``, ``service.batch`` or ``training``. The API and the batch job use it; the
contract does not know it exists (it receives plain counts).
"""

from __future__ import annotations

from service.store.base import Contact, FeedbackRecord, Store, StoreSettings, open_store

__all__ = ["Contact", "FeedbackRecord", "Store", "StoreSettings", "open_store"]
