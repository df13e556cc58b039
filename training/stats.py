"""Corpus statistics: counts per label × language × split, rendered as Markdown.

``complaint-triage data-stats --write-readme data/README.md`` rewrites the block between the
``<!-- stats:begin -->`` / ``<!-- stats:end -->`` markers; the data tests check it is current.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from training.data import SPLITS, expand_paths, split_of

BEGIN, END = "<!-- stats:begin -->", "<!-- stats:end -->"
LABELS = {"severity": ("none", "low", "medium", "high", "critical"), "sentiment": ("negative", "neutral", "positive"),
          "private_followup": (True, False)}


def read_jsonl(paths: list[str]) -> list[dict[str, Any]]:
    """Raw corpus rows (plain json: the data checks must not depend on the training stack)."""
    rows = []
    for path in expand_paths(paths):
        with open(path, encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    return rows


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


HARD_NEGATIVE_CASES = ("how_to", "info", "own_mistake", "request", "thread_reply", "mention", "share", "joke",
                       "news", "feature_request", "third_party")
ACCUSATION_CASES = ("accusation", "redress", "escalation", "fraud", "safety")


def render_v2(corpus: list[dict[str, Any]], field: list[dict[str, Any]]) -> list[str]:
    """Corpus v2 mix: share of non-complaints, hard negatives and accusations by case; the field set."""
    v2 = [r for r in corpus if "case" in r]
    if not v2:
        return []
    n = len(corpus)
    cases = Counter(r["case"] for r in v2)
    none = sum(r["severity"] == "none" for r in corpus)
    hard = sum(cases[c] for c in HARD_NEGATIVE_CASES)
    acc = sum(r["case"] in ACCUSATION_CASES and r["severity"] in ("high", "critical") for r in v2)
    lines = ["", f"Corpus v2 (rows with a `case`): **{len(v2)}** messages; `none` in the whole corpus: "
             f"{none} ({100 * none / n:.1f} %); hard negatives: {hard}; explicit accusations and blame "
             f"(`high`/`critical` with case accusation/redress/escalation/fraud/safety): {acc}.", "",
             "**case** (v2 rows)", ""]
    lines += _table(["case", "messages"], [[c, k] for c, k in cases.most_common()])
    if field:
        fl = Counter(r["lang"] for r in field)
        fs = Counter(r["severity"] for r in field)
        lines += ["", f"Field set: **{len(field)}** messages (evaluation only); languages "
                  + ", ".join(f"{k} {v}" for k, v in fl.most_common()) + "; severity "
                  + ", ".join(f"{k} {fs[k]}" for k in LABELS["severity"]) + "."]
    return lines


def render(corpus: list[dict[str, Any]], challenge: list[dict[str, Any]],
           field_rows: list[dict[str, Any]] | None = None,
           second: list[dict[str, Any]] | None = None, adjudicated: list[dict[str, Any]] | None = None) -> str:
    """Markdown tables: split sizes, label × split, language × split, language × severity; with the
    v2 extras, the case mix, the field set and the blind second-label agreement."""
    split = Counter(split_of(r["id"]) for r in corpus)
    lines = [f"Corpus: **{len(corpus)}** messages; challenge set: **{len(challenge)}** (evaluation only).", ""]
    lines += _table(["split", "messages", "share"],
                    [[s, split[s], f"{100 * split[s] / len(corpus):.1f} %"] for s in SPLITS])
    for field, labels in LABELS.items():
        by = Counter((str(r[field]).lower(), split_of(r["id"])) for r in corpus)
        ch = Counter(str(r[field]).lower() for r in challenge)
        rows = [[str(lab).lower(), *(by[(str(lab).lower(), s)] for s in SPLITS),
                 sum(by[(str(lab).lower(), s)] for s in SPLITS), ch[str(lab).lower()]] for lab in labels]
        lines += ["", f"**{field}**", ""] + _table([field, *SPLITS, "total", "challenge"], rows)
    langs = Counter(r["lang"] for r in corpus)
    by_lang = Counter((r["lang"], split_of(r["id"])) for r in corpus)
    ch_lang = Counter(r["lang"] for r in challenge)
    rows = [[lang, *(by_lang[(lang, s)] for s in SPLITS), n, f"{100 * n / len(corpus):.1f} %", ch_lang[lang]]
            for lang, n in langs.most_common()]
    lines += ["", "**language**", ""] + _table(["lang", *SPLITS, "total", "share", "challenge"], rows)
    sev = LABELS["severity"]
    cross = Counter((r["lang"], r["severity"]) for r in corpus)
    lines += ["", "**language × severity** (all splits)", ""] + _table(
        ["lang", *sev], [[lang, *(cross[(lang, s)] for s in sev)] for lang, _ in langs.most_common()])
    lines += ["", f"Code-switched messages: {sum(bool(r.get('code_switched')) for r in corpus)} in the corpus, "
              f"{sum(bool(r.get('code_switched')) or r.get('phenomenon') == 'code_switching' for r in challenge)} "
              "in the challenge set.",
              f"Industries: {len({r['industry'] for r in corpus})}; channels: {len({r['channel'] for r in corpus})}."]
    lines += render_v2(corpus, field_rows or [])
    if second:
        from training.agreement import agreement, first_labels, render_agreement

        adj = adjudicated or []
        for name, rows in (("corpus", corpus), ("field set", field_rows or [])):
            lines += render_agreement(name, agreement(first_labels(rows, adj), second))
        changed = Counter(rec["head"] for rec in adj if rec["final"] != rec["first"])
        lines += ["", f"Adjudicated disagreements: {len(adj)} (head × message); the final label differs from the "
                  "first pass in " + ", ".join(f"{h} {changed[h]}" for h in ("severity", "private_followup",
                                                                              "sentiment")) + "."]
    return "\n".join(lines)


def read_v2_extras(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Field set rows, second-pass labels and adjudication records (empty when absent)."""
    field = read_jsonl([str(root / "field")]) if any((root / "field").glob("*.jsonl")) else []
    labels2 = root / "labels2"
    second = read_jsonl([str(labels2 / "second_pass.jsonl")]) if (labels2 / "second_pass.jsonl").exists() else []
    adj = read_jsonl([str(labels2 / "adjudicated.jsonl")]) if (labels2 / "adjudicated.jsonl").exists() else []
    return field, second, adj


def replace_block(text: str, block: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"the data card has no {BEGIN} … {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main(args: argparse.Namespace) -> int:
    corpus = read_jsonl(args.corpus)
    challenge = read_jsonl([args.challenge]) if Path(args.challenge).exists() else []
    block = render(corpus, challenge, *read_v2_extras(Path(args.challenge).parent))
    print(block)
    if args.write_readme:
        path = Path(args.write_readme)
        path.write_text(replace_block(path.read_text(encoding="utf-8"), block), encoding="utf-8")
        print(f"\nupdated {path}")
    return 0
