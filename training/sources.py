"""What a training run learns from: the user's rows (optionally mixed with the default corpus),
which heads those rows can train, and the dry run that checks all of it in seconds."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Callable, Sequence

from model.labels import FOLLOWUP_LABELS, SENTIMENT_LABELS, SEVERITY_LABELS
from training.config import TrainConfig
from training.data import MISSING, DataError, Example, expand_paths, load_examples, split_examples

#: a head with fewer labelled training rows than this is not trained (its output would be noise)
MIN_LABELS = 1


def load_training_data(cfg: TrainConfig, on_error: Callable[[DataError], None] | None = None) -> list[Example]:
    """The user's rows (mapped through ``cfg.label_map``), plus the default corpus with
    ``--with-default-corpus`` (user rows then weigh ``cfg.user_weight`` each)."""
    user = load_examples(cfg.data, cfg.columns, cfg.label_map, on_error)
    if not cfg.with_default_corpus:
        return user
    overlap = {p.resolve() for p in expand_paths(cfg.data)} & {p.resolve() for p in expand_paths([cfg.default_corpus])}
    if overlap:
        raise DataError(f"--with-default-corpus: {sorted(map(str, overlap))[0]} is both in --data and in the "
                        f"default corpus {cfg.default_corpus}; pass only your own files as --data")
    base = load_examples([cfg.default_corpus], on_error=on_error)
    ids = {e.id for e in base}
    clash = [e.id for e in user if e.id in ids]
    if clash:
        raise DataError(f"--with-default-corpus: id {clash[0]!r} occurs in your data and in the default corpus "
                        f"({len(clash)} ids clash); rename them (or use --id-col with another column)")
    return [dataclasses.replace(e, weight=cfg.user_weight) for e in user] + base


def head_status(train_set: Sequence[Example]) -> dict[str, str]:
    """Per head: why it is not (fully) trained; a head absent from the answer is trained.

    ``severity``: no level and no complaint label → untrained; only coarse complaint labels →
    ``severity_levels`` untrained (P(complaint) is trained, the split among levels is not)."""
    n_sev = sum(e.severity != MISSING for e in train_set)
    n_coarse = sum(e.complaint != MISSING for e in train_set)
    out: dict[str, str] = {}
    if n_sev + n_coarse < MIN_LABELS:
        out["severity"] = "no severity or complaint labels in the training data"
    elif n_sev < MIN_LABELS:
        out["severity_levels"] = (f"only binary complaint labels ({n_coarse} rows) in the training data: "
                                  "complaint_probability/is_complaint are trained, the severity level is not")
    if sum(e.followup != MISSING for e in train_set) < MIN_LABELS:
        out["private_followup"] = "no private_followup labels in the training data"
    if sum(e.sentiment != MISSING for e in train_set) < MIN_LABELS:
        out["sentiment"] = "no sentiment labels in the training data"
    return out


def label_counts(examples: Sequence[Example]) -> dict[str, dict[str, int]]:
    """Rows per label of every head after mapping ("missing" = no label for that head)."""
    def count(values: list[int], labels: Sequence[str]) -> dict[str, int]:
        c = Counter(values)
        return {**{lab: c.get(i, 0) for i, lab in enumerate(labels)}, "missing": c.get(MISSING, 0)}

    coarse = [e.complaint for e in examples]
    return {"severity": count([e.severity for e in examples], SEVERITY_LABELS),
            "is_complaint (binary only)": {"complaint": coarse.count(1), "not complaint": coarse.count(0)},
            "private_followup": count([e.followup for e in examples], FOLLOWUP_LABELS),
            "sentiment": count([e.sentiment for e in examples], SENTIMENT_LABELS)}


def dry_run(cfg: TrainConfig) -> int:
    """Validate data and label maps without training: print what a run would learn from.

    Returns 0 when the data is usable, 2 when some row would stop training or no head can train."""
    problems: list[DataError] = []
    examples = load_training_data(cfg, problems.append)
    splits = split_examples(examples)
    train_set = splits["train"][: cfg.max_train_rows or None]
    print(f"data: {len(examples)} usable rows from {', '.join(map(str, expand_paths(cfg.data)))}"
          + (f" + default corpus {cfg.default_corpus} (your rows weigh {cfg.user_weight})"
             if cfg.with_default_corpus else ""))
    print("split: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
          + (f" (training capped at {len(train_set)} by --max-train-rows)" if cfg.max_train_rows else ""))
    print("labels after mapping (training split):")
    for head, counts in label_counts(train_set).items():
        print(f"  {head:<27} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    status = head_status(train_set)
    for head in ("severity", "private_followup", "sentiment"):
        why = status.get(head) or (status.get("severity_levels") if head == "severity" else None)
        print(f"head {head}: " + ("trained" if why is None else ("partly trained: " if head not in status
                                                                   else "NOT trained: ") + why))
    if cfg.init_from:
        from training.checkpoint import resolve_init

        try:
            print(f"warm start from {resolve_init(cfg.init_from)}")
        except DataError as exc:
            problems.append(exc)
    reasons = Counter(_reason(str(p)) for p in problems)
    if problems:
        print(f"rows rejected: {len(problems)} (training stops at the first one):")
        for why, n in reasons.most_common():
            print(f"  {n:>6} × {why}")
        for p in problems[:5]:
            print(f"  e.g. {p}")
    else:
        print("rows rejected: 0")
    trainable = {"severity", "private_followup", "sentiment"} - set(status)
    if not trainable:
        print("no head has labels: nothing to train")
    return 2 if problems or not trainable else 0


def _reason(message: str) -> str:
    """The kind of a row error, without the file/row prefix and the cell value."""
    body = message.split(": ", 1)[-1] if " row " in message.split(": ", 1)[0] else message
    return body.split(", got ")[0].split(" value ")[0][:90]
