"""Inter-annotator agreement of the blind second labelling pass, rendered for the data card.

``data/labels2/second_pass.jsonl`` holds a second, independent label set for a sample of
corpus and field-set messages (labellers saw only the text, its channel and GUIDELINES.md);
``data/labels2/adjudicated.jsonl`` records every disagreement with the first label, the second
label and the adjudicated final label (which is what the corpus and field files hold).
Agreement is measured between the FIRST and SECOND pass, before adjudication.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

SEVERITY = ("none", "low", "medium", "high", "critical")
SENTIMENT = ("negative", "neutral", "positive")


def first_labels(rows: Sequence[dict[str, Any]], adjudicated: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The first-pass labels: the file's label, or the recorded ``first`` where adjudication changed it."""
    out = {r["id"]: {"severity": r["severity"], "private_followup": r["private_followup"],
                     "sentiment": r["sentiment"]} for r in rows}
    for rec in adjudicated:
        if rec["id"] in out:
            out[rec["id"]][rec["head"]] = rec["first"]
    return out


def _kappa(a: Sequence[Any], b: Sequence[Any], weights: str | None = None) -> float:
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(list(map(str, a)), list(map(str, b)))) if weights is None else \
        float(cohen_kappa_score([SEVERITY.index(x) for x in a], [SEVERITY.index(x) for x in b], weights=weights))


def agreement(first: dict[str, dict[str, Any]], second: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Cohen's κ per head (severity also quadratic-weighted and as complaint yes/no) and raw agreement."""
    pairs = [(first[s["id"]], s) for s in second if s["id"] in first]
    if not pairs:
        return {"n": 0}
    f_sev = [p["severity"] for p, _ in pairs]
    s_sev = [s["severity"] for _, s in pairs]
    out: dict[str, Any] = {
        "n": len(pairs),
        "severity_kappa": _kappa(f_sev, s_sev),
        "severity_qwk": _kappa(f_sev, s_sev, weights="quadratic"),
        "complaint_kappa": _kappa([x != "none" for x in f_sev], [x != "none" for x in s_sev]),
        "private_followup_kappa": _kappa([p["private_followup"] for p, _ in pairs],
                                         [s["private_followup"] for _, s in pairs]),
        "sentiment_kappa": _kappa([p["sentiment"] for p, _ in pairs], [s["sentiment"] for _, s in pairs]),
    }
    for head in ("severity", "private_followup", "sentiment"):
        out[f"{head}_agreement"] = float(np.mean([p[head] == s[head] for p, s in pairs]))
    out["severity_confusion"] = Counter((a, b) for a, b in zip(f_sev, s_sev))
    return out


def render_agreement(name: str, stats: dict[str, Any]) -> list[str]:
    """Markdown lines: κ table and the severity confusion table (first pass rows, second pass columns)."""
    if not stats.get("n"):
        return []
    lines = ["", f"**Blind second labels: {name}** ({stats['n']} messages; agreement before adjudication)", "",
             "| head | Cohen's κ | raw agreement |", "|---|---:|---:|",
             f"| severity (5 levels) | {stats['severity_kappa']:.3f} (quadratic-weighted {stats['severity_qwk']:.3f}) "
             f"| {100 * stats['severity_agreement']:.1f} % |",
             f"| complaint yes/no | {stats['complaint_kappa']:.3f} | |",
             f"| private_followup | {stats['private_followup_kappa']:.3f} | {100 * stats['private_followup_agreement']:.1f} % |",
             f"| sentiment | {stats['sentiment_kappa']:.3f} | {100 * stats['sentiment_agreement']:.1f} % |",
             "", "Severity, first pass (rows) × second pass (columns):", "",
             "| first \\ second | " + " | ".join(SEVERITY) + " |", "|---|" + "---:|" * len(SEVERITY)]
    conf = stats["severity_confusion"]
    lines += [f"| {a} | " + " | ".join(str(conf[(a, b)]) for b in SEVERITY) + " |" for a in SEVERITY]
    return lines
