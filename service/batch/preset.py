"""``--preset``: the column mapping of a common export, as a small TOML file anyone can read and copy.

The shipped presets live in ``service/batch/presets/<name>.toml``; ``--preset path/to/mine.toml``
reads your own. A preset may hold:

.. code-block:: toml

    description = "what export this reads"
    channel = "twitter"              # --channel: the channel of every row
    where = "inbound=true"           # --where: score only these rows
    created_at_format = "%m/%d/%Y %H:%M"   # --created-at-format
    input_timezone = "America/New_York"    # --input-timezone
    [columns]                        # --<field>-col: a column name or a dotted path
    text = "text"
    id = "tweet_id"
    keep = ["author_id"]             # --keep

Explicit flags override the preset, field by field. Unknown keys are refused (a typo would
otherwise be silently ignored). Standard library only.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import UsageError

PRESET_DIR = Path(__file__).with_name("presets")
_TOP = {"description", "channel", "where", "created_at_format", "input_timezone", "columns"}
_COLUMNS = {"text", "id", "channel", "followers", "verified", "promoted", "prior_contacts", "created_at", "keep"}


def preset_names() -> list[str]:
    """The shipped presets, by name."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


@dataclass(frozen=True)
class Preset:
    """One parsed preset file."""

    name: str
    path: Path
    raw: dict[str, Any]

    def settings(self) -> dict[str, Any]:
        """``columns`` (field → column), ``keep``, ``where`` (column, value), ``channel``, and the
        two timestamp settings, as far as the preset sets them."""
        out: dict[str, Any] = {k: v for k, v in self.raw.items() if k in ("channel", "created_at_format",
                                                                          "input_timezone")}
        cols = dict(self.raw.get("columns", {}))
        if "keep" in cols:
            out["keep"] = tuple(cols.pop("keep"))
        out["columns"] = cols
        if "where" in self.raw:
            col, _, value = self.raw["where"].partition("=")
            out["where"] = (col.strip(), value.strip())
        return out


def load_preset(spec: str) -> Preset:
    """A shipped preset by name, or a TOML file by path; :class:`UsageError` for anything wrong."""
    path = Path(spec)
    if not (spec.endswith(".toml") or path.exists()):
        if spec not in preset_names():
            raise UsageError(f"--preset {spec!r}: no such preset (shipped: {', '.join(preset_names())}; "
                             "or give the path of a .toml file)")
        path = PRESET_DIR / f"{spec}.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"--preset {spec}: {exc}") from None
    _check(raw, spec)
    return Preset(name=path.stem if path.parent == PRESET_DIR else str(path), path=path, raw=raw)


def _check(raw: dict[str, Any], spec: str) -> None:
    where = f"--preset {spec}"
    if unknown := set(raw) - _TOP:
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(_TOP))})")
    cols = raw.get("columns", {})
    if not isinstance(cols, dict):
        raise UsageError(f"{where}: [columns] must be a table")
    if unknown := set(cols) - _COLUMNS:
        raise UsageError(f"{where}: unknown [columns] key(s) {', '.join(sorted(unknown))} "
                         f"(allowed: {', '.join(sorted(_COLUMNS))})")
    for key, value in cols.items():
        ok = (isinstance(value, list) and all(isinstance(v, str) and v for v in value)) if key == "keep" \
            else isinstance(value, str)
        if not ok:
            raise UsageError(f"{where}: columns.{key} must be {'a list of names' if key == 'keep' else 'a string'}")
    for key in ("description", "channel", "where", "created_at_format", "input_timezone"):
        if key in raw and not isinstance(raw[key], str):
            raise UsageError(f"{where}: {key} must be a string")
    if "where" in raw:
        col, eq, value = raw["where"].partition("=")
        if not eq or not col.strip() or not value.strip():
            raise UsageError(f"{where}: where must read COLUMN=VALUE, got {raw['where']!r}")
