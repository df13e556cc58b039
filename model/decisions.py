"""Decisions from head probabilities: one place for thresholds, used by every caller.

The HTTP API, the batch job, evaluation and the quantisation gate all turn probabilities
into labels here, so ``is_complaint``, the severity label and the priority gate can never
disagree: severity is ``none`` exactly when P(severity != none) is below the bundle's
calibrated ``complaint_threshold``, otherwise the most likely of the four complaint levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.bundle import BundleError, BundleMeta


@dataclass(frozen=True)
class Decisions:
    """Label indices per head for a batch, rows in input order."""

    severity: np.ndarray  # [n] int index into SEVERITY_LABELS
    is_complaint: np.ndarray  # [n] bool
    private_followup: np.ndarray  # [n] bool
    sentiment: np.ndarray  # [n] int index into SENTIMENT_LABELS


def decide_arrays(severity: np.ndarray, followup: np.ndarray, sentiment: np.ndarray,
                  complaint_threshold: float, followup_threshold: float) -> Decisions:
    """Decisions from raw probability arrays (``severity`` [n, 5], ``followup`` [n], ``sentiment`` [n, 3])."""
    complaint = (1.0 - severity[:, 0]) >= complaint_threshold
    level = 1 + severity[:, 1:].argmax(axis=1)
    return Decisions(severity=np.where(complaint, level, 0), is_complaint=complaint,
                     private_followup=followup >= followup_threshold, sentiment=sentiment.argmax(axis=1))


def decide(preds, meta: BundleMeta) -> Decisions:  # type: ignore[no-untyped-def]
    """Decisions for :class:`model.scorer.Predictions` with the bundle's thresholds."""
    return decide_arrays(preds.severity, preds.followup, preds.sentiment,
                         meta.complaint_threshold, meta.followup_threshold)


def check_complaint_prior(train_rate: float, target_rate: float) -> None:
    """Raise :class:`BundleError` unless a prior correction from ``train_rate`` to ``target_rate`` is possible."""
    if not 0.0 < train_rate < 1.0:
        raise BundleError("this bundle does not record its training complaint rate; retrain to use a complaint prior")
    if not 0.0 < target_rate < 1.0:
        raise BundleError(f"complaint prior must be in (0, 1), got {target_rate}")


def shift_complaint_prior(severity: np.ndarray, train_rate: float, target_rate: float) -> np.ndarray:
    """Re-weight severity probabilities for a deployment whose complaint rate differs from training.

    Bayes' rule under label shift (Saerens et al. 2002): multiply P(none) by
    (1 - target) / (1 - train) and the four complaint levels by target / train, renormalise.
    The ordering among complaint levels is unchanged; only the complaint/none balance moves.
    """
    check_complaint_prior(train_rate, target_rate)
    weights = np.array([(1.0 - target_rate) / (1.0 - train_rate)] + [target_rate / train_rate] * 4)
    shifted = severity * weights
    return shifted / shifted.sum(axis=1, keepdims=True)
