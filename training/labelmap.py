"""Map a user's label values onto ours without editing their file.

``--label-map severity=0:none,1:low,2:medium,3:high,4:critical`` (one spec per head, repeatable)
turns the values found in the data into this project's labels. The names of the research
complaint-severity scale (non-complaint, no explicit reproach, disapproval, accusation, blame)
are understood for severity without a map; note that research "blame" needs no escalation
signal, so mapping it to ``critical`` over-grades some rows (see data/GUIDELINES.md, section 1).

A spec may also be a TOML file (``--label-map labels.toml``) with one table per head, equal to
the inline form::

    [severity]
    0 = "none"
    1 = "low"
    [sentiment]
    neg = "negative"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from model.labels import FOLLOWUP_LABELS, SENTIMENT_LABELS, SEVERITY_LABELS

TARGETS = {"severity": SEVERITY_LABELS, "sentiment": SENTIMENT_LABELS, "private_followup": FOLLOWUP_LABELS,
           "is_complaint": FOLLOWUP_LABELS}
RESEARCH_SEVERITY = {"non-complaint": "none", "non complaint": "none", "no explicit reproach": "low",
                     "disapproval": "medium", "accusation": "high", "blame": "critical"}

LabelMaps = dict[str, dict[str, str]]


def key(value: Any) -> str:
    """The lookup form of a cell: trimmed, lower-case; integral floats (pandas) as integers."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def _add(maps: LabelMaps, where: str, head: str, src: str, dst: str) -> None:
    head = head.strip().replace("-", "_")
    if head not in TARGETS:
        raise ValueError(f"label map {where}: expected HEAD=FROM:TO,… with HEAD one of {', '.join(TARGETS)}")
    dst = dst.strip().lower()
    if not src.strip() or dst not in TARGETS[head]:
        raise ValueError(f"label map {where}: {src!r} → {dst!r} must be FROM:TO with TO one of "
                         f"{', '.join(TARGETS[head])}")
    maps.setdefault(head, {})[key(src)] = dst


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's tables; ValueError naming ``what`` (e.g. "config file") when it cannot be read or parsed."""
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{what} {path}: not valid TOML: {exc}") from None


def _toml_maps(path: Path, maps: LabelMaps) -> None:
    raw = read_toml(path, "label map file")
    for head, table in raw.items():
        if not isinstance(table, dict):
            raise ValueError(f"label map file {path}: {head!r} must be a table like [{head}] with FROM = \"TO\" lines")
        for src, dst in table.items():
            if not isinstance(dst, str):
                raise ValueError(f"label map file {path}: [{head}] {src} = {dst!r}: the target must be a string")
            _add(maps, f"file {path} [{head}]", head, src, dst)


def parse_label_maps(specs: Iterable[str]) -> LabelMaps:
    """``head=from:to,from:to`` specs or TOML files → {head: {from: to}}; ValueError names the bad part."""
    maps: LabelMaps = {"severity": dict(RESEARCH_SEVERITY)}
    for spec in specs:
        head, sep, pairs = spec.partition("=")
        if not sep and (spec.endswith(".toml") or Path(spec).is_file()):
            _toml_maps(Path(spec), maps)
            continue
        if not sep or head.strip().replace("-", "_") not in TARGETS:
            raise ValueError(f"label map {spec!r}: expected HEAD=FROM:TO,… with HEAD one of {', '.join(TARGETS)}, "
                             "or a .toml file")
        for pair in filter(None, (p.strip() for p in pairs.split(","))):
            src, colon, dst = pair.rpartition(":")
            if not colon:
                raise ValueError(f"label map {spec!r}: {pair!r} must be FROM:TO with TO one of "
                                 f"{', '.join(TARGETS[head.strip().replace('-', '_')])}")
            _add(maps, repr(spec), head, src, dst)
    return maps


def map_value(head: str, value: Any, maps: LabelMaps | None) -> Any:
    """The mapped label for ``value`` (unchanged when no map entry applies)."""
    if value is None or not maps or head not in maps:
        return value
    return maps[head].get(key(value), value)
