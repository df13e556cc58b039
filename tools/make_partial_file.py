"""Build a realistic partially labelled CSV from the authored corpus, in a third party's schema.

Used for the README's retraining example: other column names (``tweet_id``, ``body``,
``language``, ``sev``, ``complaint``, ``mood``), severity as numbers 0-4 on some rows, only a
binary complaint yes/no on the others, sentiment as pos/neu/neg, and no private-follow-up column.

    python -m tools.make_partial_file --out artifacts/partial/tweets.csv --rows 3400 --levels 0.35
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

LEVEL = {"none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
MOOD = {"negative": "neg", "neutral": "neu", "positive": "pos"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", nargs="+", default=sorted(map(str, Path("data/corpus").glob("v2-*.jsonl"))),
                    help="source JSONL files (default: data/corpus/v2-*.jsonl)")
    ap.add_argument("--out", type=Path, required=True, help="CSV to write")
    ap.add_argument("--rows", type=int, default=3400, help="rows to sample (default 3400)")
    ap.add_argument("--levels", type=float, default=0.35,
                    help="share of rows that keep a numeric severity level; the rest get only yes/no (default 0.35)")
    ap.add_argument("--seed", type=int, default=7, help="sampling seed (default 7)")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for path in args.corpus for line in open(path, encoding="utf-8") if line.strip()]
    rng = random.Random(args.seed)
    rng.shuffle(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["tweet_id", "body", "language", "sev", "complaint", "mood"])
        w.writeheader()
        for r in rows[: args.rows]:
            level = rng.random() < args.levels
            w.writerow({"tweet_id": r["id"], "body": r["text"], "language": r["lang"],
                        "sev": LEVEL[r["severity"]] if level else "",
                        "complaint": "" if level else ("yes" if r["severity"] != "none" else "no"),
                        "mood": MOOD[r["sentiment"]]})
    print(f"wrote {min(args.rows, len(rows))} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
