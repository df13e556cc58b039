"""Side-by-side evaluation of several bundles on the same sets (e.g. corpus v1 vs v2 models).

    python tools/compare_bundles.py --bundle v1=artifacts/v1 --bundle v2=artifacts/bundle \\
        --corpus data/corpus --challenge data/challenge --field data/field --output compare.md

Every bundle is scored on the test split of ``--corpus`` (the split is a function of the id,
so all bundles see the same rows), the challenge set and the field set, with each bundle's own
calibrated decisions (model.decisions). Prints and writes a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model.scorer import Scorer
from training.data import load_examples, load_optional, split_examples
from training.evaluate import bundle_decisions, evaluate

COLUMNS = ("severity macro-F1", "complaint macro-F1", "complaint AUC", "severity MAE", "severity QWK",
           "follow-up macro-F1", "follow-up AUC", "sentiment macro-F1")


def row(metrics: dict) -> list[float | None]:
    sev, fol, sen = metrics["severity"], metrics["private_followup"], metrics["sentiment"]
    return [sev.get("macro_f1"), sev.get("complaint_macro_f1"), sev.get("complaint_auc"), sev.get("mae"),
            sev.get("qwk"), fol.get("macro_f1"), fol.get("auc"), sen.get("macro_f1")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", action="append", required=True, help="NAME=DIR, repeatable")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--challenge", default="data/challenge")
    ap.add_argument("--field", default="data/field")
    ap.add_argument("--by-language", action="store_true", help="add per-language severity/sentiment rows")
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()
    sets = {"test": split_examples(load_examples([args.corpus]))["test"],
            "challenge": load_optional(args.challenge), "field": load_optional(args.field)}
    sets = {name: rows for name, rows in sets.items() if rows}
    lines = ["| set | n | bundle | " + " | ".join(COLUMNS) + " |", "|---|---:|---|" + "---:|" * len(COLUMNS)]
    langs: list[str] = []
    for spec in args.bundle:
        name, _, path = spec.partition("=")
        scorer = Scorer.load(path)
        for set_name, examples in sets.items():
            preds = scorer.predict([e.text for e in examples])
            m = evaluate(examples, bundle_decisions(preds, scorer.meta), preds)
            cells = " | ".join("" if v is None else f"{v:.3f}" for v in row(m))
            lines.append(f"| {set_name} | {len(examples)} | {name} | {cells} |")
            if args.by_language:
                langs += [f"| {set_name} | {lang} | {r['n']} | {name} | {r['severity'] or 0:.3f} | "
                          f"{r['private_followup'] or 0:.3f} | {r['sentiment'] or 0:.3f} |"
                          for lang, r in m["per_language"].items() if r["n"] >= 20]
    if langs:
        lines += ["", "| set | lang | n | bundle | severity | private_followup | sentiment |",
                  "|---|---|---:|---|---:|---:|---:|", *sorted(langs)]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
