"""``complaint-triage evaluate``: a bundle on the default splits, or on any labeled file."""

from __future__ import annotations

import argparse
import json

from model.scorer import Scorer
from training.config import ColumnMap
from training.data import load_examples, load_optional, split_examples
from training.evaluate import bundle_decisions, evaluate
from training.report import HEADS, evaluate_bundle, markdown_report, summary


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
    examples = load_examples(args.data, _columns(args))
    scorer = Scorer.load(args.bundle)
    preds = scorer.predict([e.text for e in examples])
    metrics = evaluate(examples, bundle_decisions(preds, scorer.meta), preds)
    print(f"{len(examples)} rows from {', '.join(args.data)}; macro-F1: " +
          ", ".join(f"{h} {v:.3f}" for h, v in summary(metrics).items()))
    for lang, row in metrics["per_language"].items():
        print(f"  {lang:>4} n={row['n']:<5} " + "  ".join(
            f"{h} {'-' if row[h] is None else format(row[h], '.3f')}" for h in HEADS))
    if args.output:
        args.output.write_text(json.dumps(metrics, indent=2) + "\n")
    return 0
