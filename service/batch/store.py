"""The part store ``OUT.partial/``: what makes a batch job resumable, and the final assembly.

Every chunk of scored rows is written atomically as ``part-<first>-<end>.jsonl``; a manifest
records the job the parts belong to. A re-run of the same job continues after the last complete
part; a different job is refused. :func:`assemble` writes ``OUT`` under a temporary name and
renames it, so ``OUT`` is never half-written and holds exactly one row per input row.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from service.batch.formats import FinalWriter, encode_records
from service.contract.validate import error_kind
from service.errors import UsageError

PART = re.compile(r"part-(\d{12})-(\d{12})\.jsonl$")


class PartStore:
    """The ``OUT.partial`` directory: manifest + contiguous, atomically written parts."""

    def __init__(self, out: Path, manifest: dict[str, Any], restart: bool) -> None:
        self.dir = out.with_name(out.name + ".partial")
        if restart:
            shutil.rmtree(self.dir, ignore_errors=True)
        manifest = json.loads(json.dumps(manifest))  # as stored: tuples become lists, else never equal
        mpath = self.dir / "manifest.json"
        if mpath.exists():
            old = json.loads(mpath.read_text())
            if old != manifest:
                changed = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
                raise UsageError(f"{self.dir} holds a partial run of a different job (differs in: "
                                 f"{', '.join(changed)}); re-run with --restart to discard it")
        else:  # atomically: a kill mid-write must not leave a truncated manifest behind
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = mpath.with_suffix(".tmp")
            tmp.write_text(json.dumps(manifest, indent=2))
            os.replace(tmp, mpath)

    def parts(self) -> list[tuple[int, int, Path]]:
        """Contiguous parts from row 0; anything after a gap is stale and removed."""
        found = sorted((int(m[1]), int(m[2]), p) for p in self.dir.iterdir() if (m := PART.match(p.name)))
        done, keep = 0, []
        for start, end, path in found:
            if start == done:
                keep.append((start, end, path))
                done = end
            else:
                path.unlink()
        return keep

    def done_rows(self) -> int:
        parts = self.parts()
        return parts[-1][1] if parts else 0

    def add(self, start: int, records: list[dict[str, Any]]) -> None:
        end = start + len(records)
        final = self.dir / f"part-{start:012d}-{end:012d}.jsonl"
        tmp = final.with_suffix(".tmp")
        tmp.write_bytes(encode_records(records))
        os.replace(tmp, final)


class _Outcome(msgspec.Struct):
    error: str | None = None
    warnings: list[str] | None = None
    skipped: str | None = None


@dataclass
class Tally:
    """What happened to the rows of a whole job (resumed runs included), grouped by kind."""

    ok: int = 0
    warned: int = 0  # ok rows with at least one warning
    errors: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        """Rows written to the output (skipped rows are not)."""
        return self.ok + sum(self.errors.values())


def _count(data: bytes, tally: Tally) -> bytes:
    """Count a part's records; returns the part without its skipped records."""
    dec = msgspec.json.Decoder(_Outcome)
    lines, kept = data.splitlines(keepends=True), []
    for line in lines:
        rec = dec.decode(line)
        if rec.skipped is not None:
            tally.skipped[rec.skipped] += 1
            continue
        kept.append(line)
        if rec.error is not None:
            tally.errors[error_kind(rec.error)] += 1
            continue
        tally.ok += 1
        tally.warned += bool(rec.warnings)
        tally.warnings.update(error_kind(w) for w in rec.warnings or ())
    return data if len(kept) == len(lines) else b"".join(kept)


def assemble(store: PartStore, out: str, fmt: str, keep: tuple[str, ...]) -> Tally:
    """Concatenate parts into the final file (temp name, then rename; skipped rows left out), drop
    the parts, and count ok/warned/error/skipped rows over the whole job (resumed runs included)."""
    counts = Tally()
    parts = store.parts()
    if out == "-":
        for _, _, p in parts:
            sys.stdout.buffer.write(_count(p.read_bytes(), counts))
        sys.stdout.flush()
    else:
        final = Path(out)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        writer = FinalWriter(tmp, fmt, keep)
        for _, _, p in parts:
            writer.write_jsonl_bytes(_count(p.read_bytes(), counts))
        writer.close()
    # Retire OUT.partial with one rename *before* OUT appears, then delete it: a kill can never leave
    # OUT next to a half-deleted OUT.partial (rmtree is not atomic; a later run would resume from the
    # surviving parts, under a fresh manifest if manifest.json had gone first).
    retired = store.dir.with_name(f".{store.dir.name}.done-{os.getpid()}")
    shutil.rmtree(retired, ignore_errors=True)
    os.rename(store.dir, retired)
    if out != "-":
        os.replace(tmp, final)
    shutil.rmtree(retired)
    return counts
