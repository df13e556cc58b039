"""``complaint-triage feedback export``: stored corrections → training rows ``train`` reads as they are.

One JSON line per corrected message, in the corpus format (``id``, ``text``, ``lang``,
``channel``, ``severity``, ``private_followup``, ``sentiment``; a head nobody corrected is
``null``, which training treats as "no label": that head's loss skips the row). Later feedback for
the same message wins per head. Feedback sent without its text cannot be trained on: it is
counted and left out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from service.contract.feedback import training_rows
from service.errors import UsageError
from service.store.base import StoreSettings, open_store


def export_feedback(store_url: str, output: str, *, secret: str | None = None) -> tuple[int, int]:
    """Write the training rows to ``output`` (atomically; ``-`` = stdout); returns (rows written,
    messages left out for want of a text)."""
    settings = StoreSettings(url=store_url, secret=secret, retention_days=36500, window_days=1)
    if not settings.is_redis and not Path(store_url).is_file():
        raise UsageError(f"no store at {store_url!r} (set --store or CT_STORE)")
    store = open_store(settings, need_secret=False)
    try:
        rows, skipped = training_rows(store.feedback())
    finally:
        store.close()
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if output == "-":
        print(data, end="")
        return len(rows), skipped
    out = Path(output)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(data, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {output!r}: {exc.strerror or exc}") from None
    return len(rows), skipped
