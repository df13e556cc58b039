"""``complaint-triage evaluate``: a bundle on the default splits, or on any labeled file."""

from __future__ import annotations

import argparse
import json

from model.scorer import Scorer
from training.config import ColumnMap
from training.data import load_examples, load_optional, split_examples
from training.evaluate import bundle_decisions, evaluate
from training.report import HEADS, evaluate_bundle, markdown_report, skip_untrained, summary


def _columns(args: argparse.Namespace) -> ColumnMap:
    given = {f: getattr(args, f"col_{f}") for f in ColumnMap.__dataclass_fields__ if getattr(args, f"col_{f}", None)}
    return ColumnMap(**given)


def run_evaluate(args: argparse.Namespace) -> int:
    """Print macro-F1 per head (and per language); with no --data, refresh the bundle's report."""
    if args.data is None:
        splits = split_examples(load_examples(args.corpus))
        field = getattr(args, "field", None) or "data/field"
        report = evaluate_bundle(args.bundle, splits["train"], {"test": splits["test"],
                                                                "challenge": load_optional(args.challenge),
                                                                "field": load_optional(field)})
        print(markdown_report(report))
        if args.output:
            args.output.write_text(json.dumps(report, indent=2) + "\n")
        return 0
    examples = load_examples(args.data, _columns(args), tuple(getattr(args, "label_map", None) or ()))
    scorer = Scorer.load(args.bundle)
    preds = scorer.predict([e.text for e in examples])
    metrics = skip_untrained(evaluate(examples, bundle_decisions(preds, scorer.meta), preds),
                             scorer.meta.untrained_heads)
    print(f"{len(examples)} rows from {', '.join(args.data)}; macro-F1: " +
          ", ".join(f"{h} {'-' if v is None else format(v, '.3f')}" for h, v in summary(metrics).items()))
    if "complaint" in metrics:
        c = metrics["complaint"]
        print(f"  complaint (severity != none) n={c['n']}: F1 {c['f1']:.3f}, macro-F1 {c['macro_f1']:.3f}"
              + ("" if c.get("auc") is None else f", AUC {c['auc']:.3f}"))
    for head, why in scorer.meta.untrained_heads.items():
        print(f"  {head}: not trained in this bundle ({why})")
    for lang, row in metrics["per_language"].items():
        print(f"  {lang:>4} n={row['n']:<5} " + "  ".join(
            f"{h} {'-' if row[h] is None else format(row[h], '.3f')}" for h in HEADS))
    if args.output:
        args.output.write_text(json.dumps(metrics, indent=2) + "\n")
    return 0
