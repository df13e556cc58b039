"""How much of a teacher → student macro-F1 drop is noise: a paired bootstrap per set and head.

    python -m tools.distill_ci TEACHER_BUNDLE STUDENT_BUNDLE [--resamples 1000]

Both bundles score the same rows (test split of the corpus, challenge, field) with their own
calibrated thresholds, as the student gate does; the rows are then resampled with replacement
and the drop (teacher − student, macro-F1 points) recomputed on each resample. Prints the drop,
its 95 % interval and the share of resamples in which the drop exceeds the gate's limit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from model.scorer import Scorer
from training.data import MISSING, Example, load_examples, split_examples
from training.evaluate import bundle_decisions, gold_labels

HEADS = ("severity", "complaint", "private_followup", "sentiment")


def _decisions(scorer: Scorer, examples: list[Example]) -> dict[str, np.ndarray]:
    dec = bundle_decisions(scorer.predict([e.text for e in examples]), scorer.meta)
    dec["complaint"] = (dec["severity"] > 0).astype(int)
    return dec


def bootstrap(gold: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int,
              rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """The macro-F1 drop a → b on the rows and on ``resamples`` paired resamples of them."""
    def f(y: np.ndarray, p: np.ndarray) -> float:
        return float(f1_score(y, p, average="macro", zero_division=0))

    n = len(gold)
    draws = [rng.integers(0, n, n) for _ in range(resamples)]
    return f(gold, a) - f(gold, b), np.array([f(gold[i], a[i]) - f(gold[i], b[i]) for i in draws])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("teacher", type=Path)
    ap.add_argument("student", type=Path)
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--challenge", default="data/challenge/challenge.jsonl")
    ap.add_argument("--field", default="data/field")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--max-drop", type=float, default=0.01)
    args = ap.parse_args(argv)
    teacher, student = Scorer.load(args.teacher), Scorer.load(args.student)
    sets = {"test": split_examples(load_examples([args.corpus]))["test"],
            "challenge": load_examples([args.challenge]), "field": load_examples([args.field])}
    rng = np.random.default_rng(0)
    print(f"{'set':9s} {'head':17s} {'n':>5s} {'drop':>7s} {'95% interval':>18s}  P(drop > {100 * args.max_drop:g})")
    for name, examples in sets.items():
        gold = gold_labels(examples)
        gold["complaint"] = np.array([e.complaint_gold for e in examples])
        dt, ds = _decisions(teacher, examples), _decisions(student, examples)
        for head in HEADS:
            keep = gold[head] != MISSING
            drop, draws = bootstrap(gold[head][keep], dt[head][keep], ds[head][keep], args.resamples, rng)
            lo, hi = np.percentile(draws, [2.5, 97.5])
            print(f"{name:9s} {head:17s} {int(keep.sum()):5d} {100 * drop:+7.2f} [{100 * lo:+6.2f}, {100 * hi:+6.2f}]"
                  f"  {np.mean(draws > args.max_drop):.2f}", flush=True)


if __name__ == "__main__":
    main()
