"""Calibration on the validation split: a temperature per head, then the decision thresholds.

Temperature scaling (Guo et al. 2017) divides a head's logits by one scalar fitted to minimise
the negative log-likelihood of the validation labels; it changes confidence, not the ranking.
The complaint threshold on P(severity != none) and the follow-up threshold are then chosen on
the calibrated probabilities (best macro-F1 / F1; ties go to the value nearest 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.metrics import f1_score

from model.scorer import sigmoid, softmax
from training.data import MISSING

GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def _nll_softmax(logits: np.ndarray, gold: np.ndarray, t: float) -> float:
    p = softmax(logits / t)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(gold)), gold], 1e-12, None))))


def _nll_sigmoid(logits: np.ndarray, gold: np.ndarray, t: float) -> float:
    p = np.clip(sigmoid(logits / t), 1e-12, 1 - 1e-12)
    return float(-np.mean(gold * np.log(p) + (1 - gold) * np.log(1 - p)))


def fit_temperature(logits: np.ndarray, gold: Sequence[int], binary: bool = False) -> float:
    """Temperature in [0.25, 8] minimising validation NLL (log-spaced grid, then a finer grid)."""
    gold_arr = np.asarray(gold)
    keep = gold_arr != MISSING
    if keep.sum() < 20 or len(set(gold_arr[keep].tolist())) < 2:
        return 1.0
    lg, g = logits[keep], gold_arr[keep]
    nll = _nll_sigmoid if binary else _nll_softmax
    coarse = np.exp(np.linspace(np.log(0.25), np.log(8.0), 41))
    best = coarse[int(np.argmin([nll(lg, g, t) for t in coarse]))]
    fine = best * np.exp(np.linspace(-0.09, 0.09, 19))
    return float(round(fine[int(np.argmin([nll(lg, g, t) for t in fine]))], 4))


def best_threshold(scores: np.ndarray, gold: np.ndarray, average: str = "binary") -> float:
    """Threshold on ``scores`` with the best F1 (``average`` as in sklearn); ties nearest 0.5."""
    if len(gold) == 0 or len(set(gold.tolist())) < 2:
        return 0.5
    f1s = np.array([f1_score(gold, scores >= t, average=average, zero_division=0) for t in GRID])
    best = np.flatnonzero(f1s >= f1s.max() - 1e-9)
    return float(GRID[best[np.argmin(np.abs(GRID[best] - 0.5))]])


@dataclass(frozen=True)
class Calibration:
    temperatures: dict[str, float]
    complaint_threshold: float
    followup_threshold: float


def fit_complaint_temperature(logits: np.ndarray, complaint: Sequence[int]) -> float:
    """Severity temperature from binary complaint labels only (NLL of P(severity != none))."""
    gold = np.asarray(complaint)
    keep = gold != MISSING
    if keep.sum() < 20 or len(set(gold[keep].tolist())) < 2:
        return 1.0
    lg, g = logits[keep], gold[keep]

    def nll(t: float) -> float:
        p = np.clip(1.0 - softmax(lg / t)[:, 0], 1e-12, 1 - 1e-12)
        return float(-np.mean(g * np.log(p) + (1 - g) * np.log(1 - p)))

    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 41))
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = best * np.exp(np.linspace(-0.09, 0.09, 19))
    return float(round(fine[int(np.argmin([nll(t) for t in fine]))], 4))


def calibrate(sev_logits: np.ndarray, fol_logits: np.ndarray, sen_logits: np.ndarray,
              sev_gold: Sequence[int], fol_gold: Sequence[int], sen_gold: Sequence[int],
              complaint_gold: Sequence[int] | None = None) -> Calibration:
    """Temperatures per head and both thresholds from validation logits and labels.

    ``complaint_gold`` (1/0 from the severity level or a coarse complaint label) chooses the
    complaint threshold; the severity temperature comes from the levels when at least 20 rows
    have one, else from the binary labels."""
    sev_g = np.asarray(sev_gold)
    comp_g = np.asarray(complaint_gold) if complaint_gold is not None else np.where(sev_g == MISSING, MISSING,
                                                                                   (sev_g > 0).astype(int))
    t_sev = fit_temperature(sev_logits, sev_gold) if (sev_g != MISSING).sum() >= 20 else \
        fit_complaint_temperature(sev_logits, comp_g)
    temps = {"severity": t_sev,
             "private_followup": fit_temperature(fol_logits, fol_gold, binary=True),
             "sentiment": fit_temperature(sen_logits, sen_gold)}
    fol_g = np.asarray(fol_gold)
    keep = comp_g != MISSING
    complaint_p = 1.0 - softmax(sev_logits / temps["severity"])[:, 0]
    complaint = best_threshold(complaint_p[keep], comp_g[keep].astype(int), average="macro")
    keep_f = fol_g != MISSING
    followup = best_threshold(sigmoid(fol_logits / temps["private_followup"])[keep_f], fol_g[keep_f])
    return Calibration(temps, complaint, followup)
