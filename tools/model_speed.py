"""Raw ONNX Runtime speed of several bundles in ONE process, interleaved rounds, medians.

Other jobs on a shared machine move absolute figures between runs; interleaving the variants
round by round and quoting each against the first one (the fp32 reference) keeps the ratios
meaningful. Also reports each bundle's model size.

    python -m tools.model_speed REF_BUNDLE OTHER_BUNDLE... [--rounds 3] [--out speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

BATCH_SIZES = (8, 16, 32, 64)


def corpus_texts(n: int, seed: int = 7) -> list[str]:
    """``n`` texts of the test split (a seeded sample), the messages the model serves."""
    import random

    from training.data import load_examples, split_examples

    texts = [e.text for e in split_examples(load_examples(["data/corpus"]))["test"]]
    random.Random(seed).shuffle(texts)
    return (texts * (n // max(len(texts), 1) + 1))[:n]


def one_round(scorer: Any, single: Sequence[str], batch: Sequence[str]) -> dict[str, float]:
    """msgs/s at batch 1 (one predict call per text) and at each batch size."""
    t0 = time.perf_counter()
    for t in single:
        scorer.predict([t])
    out = {"bs1": len(single) / (time.perf_counter() - t0)}
    for b in BATCH_SIZES:
        t0 = time.perf_counter()
        scorer.predict(batch, batch_size=b)
        out[f"bs{b}"] = len(batch) / (time.perf_counter() - t0)
    return out


def measure(bundles: Sequence[Path], rounds: int, n_single: int, n_batch: int, threads: int) -> list[dict[str, Any]]:
    from model.scorer import Scorer

    scorers = [Scorer.load(b, intra_op_threads=threads, verify=False) for b in bundles]
    single, batch = corpus_texts(n_single, 1), corpus_texts(n_batch, 2)
    for s in scorers:
        s.predict(batch[:64], batch_size=32)  # warm-up
    runs: list[list[dict[str, float]]] = [[] for _ in scorers]
    for _ in range(rounds):
        for i, s in enumerate(scorers):
            runs[i].append(one_round(s, single, batch))
    ref = scorers[0].logits(batch[:256])[:3]
    diffs = [max(float(np.max(np.abs(a - b))) for a, b in zip(ref, s.logits(batch[:256])[:3])) for s in scorers]
    rows = []
    for b, r, diff in zip(bundles, runs, diffs):
        med = {k: statistics.median(x[k] for x in r) for k in r[0]}
        best = max(BATCH_SIZES, key=lambda k: med[f"bs{k}"])
        rows.append({"bundle": str(b), "model_mib": round((b / "model.onnx").stat().st_size / 2**20, 1),
                     "bs1_msgs_per_s": round(med["bs1"], 1), "best_batch": best,
                     "best_msgs_per_s": round(med[f"bs{best}"], 1), "max_abs_logit_diff": diff,
                     "per_batch": {k: round(v, 1) for k, v in med.items()}})
    for r in rows:
        r["bs1_ratio"] = round(r["bs1_msgs_per_s"] / rows[0]["bs1_msgs_per_s"], 2)
        r["best_ratio"] = round(r["best_msgs_per_s"] / rows[0]["best_msgs_per_s"], 2)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundles", nargs="+", type=Path, help="bundle directories; the first is the reference")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--single", type=int, default=150, help="texts scored one by one per round")
    p.add_argument("--batch", type=int, default=512, help="texts scored per batch size per round")
    p.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = all cores)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    missing = [b for b in args.bundles if not (b / "model.onnx").is_file()]
    if missing:
        p.error(f"not a bundle (no model.onnx): {', '.join(map(str, missing))}")
    rows = measure(args.bundles, args.rounds, args.single, args.batch, args.threads)
    print("| bundle | MiB | max abs logit diff vs first | msg/s bs=1 | × first | best batch | msg/s best | × first |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['bundle']} | {r['model_mib']} | {r['max_abs_logit_diff']:.2e} | {r['bs1_msgs_per_s']} | {r['bs1_ratio']} | {r['best_batch']} "
              f"| {r['best_msgs_per_s']} | {r['best_ratio']} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
