"""Map a user's label values onto ours without editing their file.

``--label-map severity=0:none,1:low,2:medium,3:high,4:critical`` (one spec per head, repeatable)
turns the values found in the data into this project's labels. The names of the research
complaint-severity scale (non-complaint, no explicit reproach, disapproval, accusation, blame)
are understood for severity without a map; note that research "blame" needs no escalation
signal, so mapping it to ``critical`` over-grades some rows (see data/GUIDELINES.md, section 1).
"""

from __future__ import annotations

from typing import Any, Iterable

from model.labels import FOLLOWUP_LABELS, SENTIMENT_LABELS, SEVERITY_LABELS

TARGETS = {"severity": SEVERITY_LABELS, "sentiment": SENTIMENT_LABELS, "private_followup": FOLLOWUP_LABELS}
RESEARCH_SEVERITY = {"non-complaint": "none", "non complaint": "none", "no explicit reproach": "low",
                     "disapproval": "medium", "accusation": "high", "blame": "critical"}

LabelMaps = dict[str, dict[str, str]]


def key(value: Any) -> str:
    """The lookup form of a cell: trimmed, lower-case; integral floats (pandas) as integers."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def parse_label_maps(specs: Iterable[str]) -> LabelMaps:
    """``head=from:to,from:to`` specs → {head: {from: to}}; ValueError names the bad part."""
    maps: LabelMaps = {"severity": dict(RESEARCH_SEVERITY)}
    for spec in specs:
        head, sep, pairs = spec.partition("=")
        head = head.strip().replace("-", "_")
        if not sep or head not in TARGETS:
            raise ValueError(f"label map {spec!r}: expected HEAD=FROM:TO,… with HEAD one of {', '.join(TARGETS)}")
        for pair in filter(None, (p.strip() for p in pairs.split(","))):
            src, colon, dst = pair.rpartition(":")
            dst = dst.strip().lower()
            if not colon or not src.strip() or dst not in TARGETS[head]:
                raise ValueError(f"label map {spec!r}: {pair!r} must be FROM:TO with TO one of "
                                 f"{', '.join(TARGETS[head])}")
            maps.setdefault(head, {})[key(src)] = dst
    return maps


def map_value(head: str, value: Any, maps: LabelMaps | None) -> Any:
    """The mapped label for ``value`` (unchanged when no map entry applies)."""
    if value is None or not maps or head not in maps:
        return value
    return maps[head].get(key(value), value)
