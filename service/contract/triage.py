"""Triage: model predictions + language + priority → one :class:`Result` per message.

The HTTP API and the batch job (local and Ray) both build their results here, from the same
:class:`model.Scorer` outputs and the same thresholds, so a message gets the same values everywhere.

The decisions come from :func:`model.decisions.decide_arrays` with the bundle's calibrated
thresholds (:func:`bundle_thresholds`): ``is_complaint`` is ``complaint_probability >=
complaint_threshold``, ``severity`` is ``none`` exactly when it is not a complaint (else the
most likely complaint level), and the same decision gates the priority boosts, so none of
them can disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from model.bundle import BundleMeta
from model.decisions import decide_arrays
from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS
from model.scorer import Predictions, Scorer
from service.contract.langid import detect_language
from service.contract.priority import PriorityConfig, Signals, priority
from service.contract.schemas import Message, Result


@dataclass(frozen=True)
class Thresholds:
    """The decision thresholds of one bundle (and the heads it did not train, served as null)."""

    complaint: float
    private_followup: float
    untrained: frozenset[str] = frozenset()


def bundle_thresholds(meta: BundleMeta) -> Thresholds:
    """The bundle's thresholds: ``complaint_threshold`` (0.5 when the bundle has none) and the
    calibrated private-follow-up threshold."""
    complaint = float(meta.complaint_threshold)
    return Thresholds(complaint=complaint, private_followup=meta.followup_threshold,
                      untrained=frozenset(getattr(meta, "untrained_heads", None) or ()))


def _null_untrained(res: Result, untrained: frozenset[str]) -> Result:
    """Null the outputs of heads the bundle did not train (their values would be noise)."""
    if "severity" in untrained:
        res.severity = res.severity_scores = res.complaint_probability = res.is_complaint = None
    elif "severity_levels" in untrained:
        res.severity = res.severity_scores = None
    if "private_followup" in untrained:
        res.private_followup = res.private_followup_probability = None
    if "sentiment" in untrained:
        res.sentiment = res.sentiment_scores = None
    return res


def _priority_scores(sev: dict[str, float], untrained: frozenset[str]) -> tuple[dict[str, float], str | None]:
    """Severity scores the priority rule may use, and the reason text replacing ``severity …``.

    Untrained levels: the complaint mass counts at the middle level (medium); untrained severity:
    no severity points at all."""
    if "severity" in untrained:
        return {"none": 1.0}, "severity not trained in this model"
    if "severity_levels" in untrained:
        p = 1.0 - sev["none"]
        return {"none": sev["none"], "medium": p}, f"complaint (p={p:.2f}; severity levels not trained)"
    return sev, None


def build_results(messages: Sequence[Message], preds: Predictions, thresholds: Thresholds, cfg: PriorityConfig,
                  received_at: datetime | None = None) -> list[Result]:
    """Turn head probabilities into contract results (input order preserved).

    ``received_at`` stands in for a missing ``created_at`` when judging business hours (the
    HTTP API passes the arrival time; batch jobs pass None so old files score deterministically).
    """
    results = []
    dec = decide_arrays(preds.severity, preds.followup, preds.sentiment, thresholds.complaint,
                        thresholds.private_followup)
    for i, msg in enumerate(messages):
        sev = {label: float(p) for label, p in zip(SEVERITY_LABELS, preds.severity[i])}
        sen = {label: float(p) for label, p in zip(SENTIMENT_LABELS, preds.sentiment[i])}
        fol_p = float(preds.followup[i])
        fol = bool(dec.private_followup[i])
        complaint_p = 1.0 - sev["none"]
        complaint = bool(dec.is_complaint[i])
        author = msg.author
        if "private_followup" in thresholds.untrained:
            fol = False  # no follow-up boost from an untrained head
        prio_sev, reason = _priority_scores(sev, thresholds.untrained)
        prio, reasons = priority(Signals(
            severity_scores=prio_sev, is_complaint=complaint and "severity" not in thresholds.untrained,
            private_followup=fol, private_followup_probability=fol_p,
            channel=msg.channel, followers=author.followers if author else None,
            verified=author.verified if author else None, promoted=msg.promoted,
            prior_contacts=msg.prior_contacts, when=msg.created_at or received_at), cfg)
        if reason is not None:
            reasons[0] = reason
        results.append(_null_untrained(Result(
            id=msg.id, severity=SEVERITY_LABELS[int(dec.severity[i])], severity_scores=sev,
            complaint_probability=complaint_p, is_complaint=complaint,
            private_followup=fol, private_followup_probability=fol_p,
            sentiment=SENTIMENT_LABELS[int(dec.sentiment[i])], sentiment_scores=sen,
            language=detect_language(msg.text), priority=prio, priority_reasons=reasons,
            truncated=bool(preds.truncated[i])), thresholds.untrained))
    return results


def score_messages(scorer: Scorer, messages: Sequence[Message], cfg: PriorityConfig,
                   received_at: datetime | None = None) -> list[Result]:
    """In-process scoring of a list of messages (the reference the service must equal)."""
    preds = scorer.predict([m.text for m in messages])
    return build_results(messages, preds, bundle_thresholds(scorer.meta), cfg, received_at)
