"""Evaluation: per-head metrics, per-language breakdown, confusion matrices, reliability plots,
follow-up threshold calibration, and a TF-IDF + logistic-regression baseline."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from model.bundle import BundleMeta
from model.decisions import decide_arrays
from model.labels import FOLLOWUP_LABELS, SENTIMENT_LABELS, SEVERITY_LABELS
from model.scorer import Predictions
from training.data import MISSING, Example

HEAD_LABELS = {"severity": SEVERITY_LABELS, "private_followup": FOLLOWUP_LABELS, "sentiment": SENTIMENT_LABELS}


def decisions(preds: Predictions, threshold: float, complaint_threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Predicted class index per head, decided exactly as the service decides (model.decisions)."""
    dec = decide_arrays(preds.severity, preds.followup, preds.sentiment, complaint_threshold, threshold)
    return {"severity": dec.severity, "private_followup": dec.private_followup.astype(int),
            "sentiment": dec.sentiment}


def bundle_decisions(preds: Predictions, meta: BundleMeta) -> dict[str, np.ndarray]:
    """:func:`decisions` with a bundle's calibrated thresholds, as the service applies them."""
    return decisions(preds, meta.followup_threshold, meta.complaint_threshold)


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
    if (p == MISSING).all():  # the predictor has no model for this head (no labels to train on)
        return {"n": int(keep.sum()), "untrained": "no predictions for this head"}
    ids = list(range(len(labels)))
    report = classification_report(g, p, labels=ids, target_names=list(labels), output_dict=True, zero_division=0)
    present = sorted(set(g.tolist()) | set(p.tolist()))  # macro over classes that occur, as sklearn does
    return {"n": int(keep.sum()), "macro_f1": float(f1_score(g, p, labels=present, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(g, p)),
            "per_class": {k: {m: round(float(v), 4) for m, v in report[k].items()} for k in labels},
            "confusion": confusion_matrix(g, p, labels=ids).tolist()}


def _auc(gold: np.ndarray, score: np.ndarray) -> float | None:
    return float(roc_auc_score(gold, score)) if len(set(gold.tolist())) == 2 else None


def severity_extras(g: np.ndarray, p: np.ndarray, complaint_p: np.ndarray | None) -> dict[str, Any]:
    """Ordinal and complaint-level measures: MAE in levels, quadratic-weighted κ, within-one,
    complaint (severity != none) F1 / macro-F1 and, with probabilities, AUC."""
    out: dict[str, Any] = {
        "within_one": float(np.mean(np.abs(g - p) <= 1)),
        "mae": float(np.mean(np.abs(g - p))),
        "qwk": float(cohen_kappa_score(g, p, weights="quadratic")) if len(set(g.tolist()) | set(p.tolist())) > 1
        else 0.0,
        "complaint_f1": float(f1_score(g > 0, p > 0, zero_division=0)),
        "complaint_macro_f1": float(f1_score(g > 0, p > 0, average="macro", zero_division=0)),
        "complaint_rate": {"gold": float(np.mean(g > 0)), "predicted": float(np.mean(p > 0))},
    }
    if complaint_p is not None:
        out["complaint_auc"] = _auc((g > 0).astype(int), complaint_p)
    return out


def evaluate(examples: Sequence[Example], pred: dict[str, np.ndarray],
             probs: Predictions | None = None) -> dict[str, Any]:
    """All heads, overall and per language, plus severity-specific extras (AUCs need ``probs``)."""
    gold = gold_labels(examples)
    out: dict[str, Any] = {h: head_metrics(gold[h], pred[h], HEAD_LABELS[h]) for h in HEAD_LABELS}
    sev_keep = gold["severity"] != MISSING
    if sev_keep.any():
        cp = None if probs is None else (1.0 - probs.severity[:, 0])[sev_keep]
        out["severity"].update(severity_extras(gold["severity"][sev_keep], pred["severity"][sev_keep], cp))
    comp = np.array([e.complaint_gold for e in examples])
    c_keep = comp != MISSING
    if c_keep.any() and (pred["severity"] != MISSING).all():
        # complaint = severity != none, from the level or a coarse yes/no label (binary-only files)
        g, p = comp[c_keep], (pred["severity"][c_keep] > 0).astype(int)
        out["complaint"] = {"n": int(c_keep.sum()), "f1": float(f1_score(g, p, zero_division=0)),
                            "macro_f1": float(f1_score(g, p, average="macro", zero_division=0)),
                            "rate": {"gold": float(g.mean()), "predicted": float(p.mean())}}
        if probs is not None:
            out["complaint"]["auc"] = _auc(g, (1.0 - probs.severity[:, 0])[c_keep])
    fol_keep = gold["private_followup"] != MISSING
    if probs is not None and fol_keep.any():
        out["private_followup"]["auc"] = _auc(gold["private_followup"][fol_keep], probs.followup[fol_keep])
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


def plot_reliability(examples: Sequence[Example], preds: Predictions, path: Path,
                     title: str = "Reliability (test split)") -> dict[str, float]:
    """Reliability diagram per head: severity and sentiment top class, follow-up p(true); returns ECEs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gold = gold_labels(examples)
    sev_keep, fol_keep = gold["severity"] != MISSING, gold["private_followup"] != MISSING
    sen_keep = gold["sentiment"] != MISSING
    series = {
        "severity (top class)": (preds.severity.max(1)[sev_keep],
                                 (preds.severity.argmax(1) == gold["severity"])[sev_keep].astype(float)),
        "complaint (p(severity != none))": ((1 - preds.severity[:, 0])[sev_keep],
                                            (gold["severity"] > 0)[sev_keep].astype(float)),
        "private follow-up (p(true))": (preds.followup[fol_keep], gold["private_followup"][fol_keep].astype(float)),
        "sentiment (top class)": (preds.sentiment.max(1)[sen_keep],
                                  (preds.sentiment.argmax(1) == gold["sentiment"])[sen_keep].astype(float)),
    }
    series = {k: v for k, v in series.items() if len(v[0])}
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
    ax.set_title(title)
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
            if len(set(gold[keep].tolist())) < 2:  # a head without (enough) labels is not trained
                continue
            self.models[head] = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced",
                                                   random_state=self.seed).fit(x[keep], gold[keep])
        return self

    def predict(self, examples: Sequence[Example]) -> dict[str, np.ndarray]:
        x = self.features.transform([e.text for e in examples])
        missing = np.full(len(examples), MISSING)
        return {head: self.models[head].predict(x) if head in self.models else missing for head in HEAD_LABELS}
