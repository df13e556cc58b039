"""Evaluation: per-head metrics, per-language breakdown, confusion matrices, reliability plots,
follow-up threshold calibration, and a TF-IDF + logistic-regression baseline."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from model.labels import FOLLOWUP_LABELS, SENTIMENT_LABELS, SEVERITY_LABELS
from model.scorer import Predictions
from training.data import MISSING, Example

HEAD_LABELS = {"severity": SEVERITY_LABELS, "private_followup": FOLLOWUP_LABELS, "sentiment": SENTIMENT_LABELS}


def calibrate_threshold(probs: np.ndarray, gold: Sequence[int]) -> float:
    """Follow-up threshold with the best F1 on labeled rows; ties go to the one nearest 0.5."""
    gold_arr = np.asarray(gold)
    keep = gold_arr != MISSING
    if keep.sum() == 0 or len(set(gold_arr[keep])) < 2:
        return 0.5
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    f1s = np.array([f1_score(gold_arr[keep], probs[keep] >= t, zero_division=0) for t in grid])
    best = np.flatnonzero(f1s >= f1s.max() - 1e-9)
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])


def decisions(preds: Predictions, threshold: float) -> dict[str, np.ndarray]:
    """Predicted class index per head."""
    return {"severity": preds.severity.argmax(1), "private_followup": (preds.followup >= threshold).astype(int),
            "sentiment": preds.sentiment.argmax(1)}


def gold_labels(examples: Sequence[Example]) -> dict[str, np.ndarray]:
    return {"severity": np.array([e.severity for e in examples]),
            "private_followup": np.array([e.followup for e in examples]),
            "sentiment": np.array([e.sentiment for e in examples])}


def head_metrics(gold: np.ndarray, pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Precision/recall/F1 per class, macro-F1 and accuracy on the rows that carry the label."""
    keep = gold != MISSING
    if not keep.any():
        return {"n": 0}
    g, p = gold[keep], pred[keep]
    ids = list(range(len(labels)))
    report = classification_report(g, p, labels=ids, target_names=list(labels), output_dict=True, zero_division=0)
    present = sorted(set(g.tolist()) | set(p.tolist()))  # macro over classes that occur, as sklearn does
    return {"n": int(keep.sum()), "macro_f1": float(f1_score(g, p, labels=present, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(g, p)),
            "per_class": {k: {m: round(float(v), 4) for m, v in report[k].items()} for k in labels},
            "confusion": confusion_matrix(g, p, labels=ids).tolist()}


def evaluate(examples: Sequence[Example], pred: dict[str, np.ndarray]) -> dict[str, Any]:
    """All heads, overall and per language, plus severity-specific extras."""
    gold = gold_labels(examples)
    out: dict[str, Any] = {h: head_metrics(gold[h], pred[h], HEAD_LABELS[h]) for h in HEAD_LABELS}
    sev_keep = gold["severity"] != MISSING
    if sev_keep.any():
        g, p = gold["severity"][sev_keep], pred["severity"][sev_keep]
        out["severity"]["within_one"] = float(np.mean(np.abs(g - p) <= 1))
        out["severity"]["complaint_f1"] = float(f1_score(g > 0, p > 0, zero_division=0))
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_lang[ex.lang].append(i)
    out["per_language"] = {
        lang: {"n": len(rows), **{h: head_metrics(gold[h][rows], pred[h][rows], HEAD_LABELS[h]).get("macro_f1")
                                  for h in HEAD_LABELS}}
        for lang, rows in sorted(by_lang.items(), key=lambda kv: -len(kv[1]))}
    return out


def plot_confusions(metrics: dict[str, Any], title: str, path: Path) -> Path:
    """One PNG with the three heads' confusion matrices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, head in zip(axes, HEAD_LABELS):
        cm = np.asarray(metrics[head].get("confusion", [[0]]))
        ax.imshow(cm, cmap="Blues")
        labels = HEAD_LABELS[head]
        ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.set_yticks(range(len(labels)), labels)
        for (r, c), v in np.ndenumerate(cm):
            ax.text(c, r, str(v), ha="center", va="center", color="black" if v < cm.max() / 2 else "white")
        ax.set_title(f"{head} (macro-F1 {metrics[head].get('macro_f1', 0):.3f})")
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> tuple[list[dict[str, float]], float]:
    """Reliability bins and expected calibration error."""
    edges = np.linspace(0, 1, bins + 1)
    rows, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            acc, mean = float(correct[sel].mean()), float(conf[sel].mean())
            ece += sel.mean() * abs(acc - mean)
            rows.append({"lo": float(lo), "hi": float(hi), "n": int(sel.sum()), "confidence": mean, "accuracy": acc})
    return rows, float(ece)


def plot_reliability(examples: Sequence[Example], preds: Predictions, path: Path) -> dict[str, float]:
    """Reliability diagram for severity (top-class) and follow-up (positive-class); returns ECEs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gold = gold_labels(examples)
    sev_keep, fol_keep = gold["severity"] != MISSING, gold["private_followup"] != MISSING
    series = {
        "severity (top class)": (preds.severity.max(1)[sev_keep],
                                 (preds.severity.argmax(1) == gold["severity"])[sev_keep].astype(float)),
        "private follow-up (p(true))": (preds.followup[fol_keep], gold["private_followup"][fol_keep].astype(float)),
    }
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    eces = {}
    for name, (conf, hit) in series.items():
        rows, ece = reliability(conf, hit)
        eces[name.split(" ")[0]] = ece
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o-", label=f"{name}, ECE {ece:.3f}")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.legend(fontsize=8)
    ax.set_title("Reliability (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return eces


class Baseline:
    """TF-IDF (word 1-2 + char 2-5) + logistic regression, one per head: the cheap alternative."""

    def __init__(self, seed: int = 13) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        self.features = FeatureUnion([
            ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=60000)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True,
                                     max_features=120000)),
        ])
        self.seed = seed
        self.models: dict[str, Any] = {}

    def fit(self, examples: Sequence[Example]) -> Baseline:
        from sklearn.linear_model import LogisticRegression

        x = self.features.fit_transform([e.text for e in examples])
        for head, gold in gold_labels(examples).items():
            keep = gold != MISSING
            self.models[head] = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced",
                                                   random_state=self.seed).fit(x[keep], gold[keep])
        return self

    def predict(self, examples: Sequence[Example]) -> dict[str, np.ndarray]:
        x = self.features.transform([e.text for e in examples])
        return {head: model.predict(x) for head, model in self.models.items()}
