"""Triage: the scoring contract. Model predictions + language + priority → one Result per message.

The HTTP API and the batch scorer (local and Ray) both build results here, from the same
:class:`model.Scorer` outputs, so the same message gets the same values everywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS
from model.scorer import Predictions, Scorer
from service.contract.langid import detect_language
from service.contract.priority import PriorityConfig, Signals, priority
from service.contract.schemas import Message, Result


def build_results(messages: Sequence[Message], preds: Predictions, threshold: float, cfg: PriorityConfig,
                  received_at: datetime | None = None) -> list[Result]:
    """Turn head probabilities into contract results (input order preserved).

    ``received_at`` stands in for a missing ``created_at`` when judging business hours (the
    HTTP API passes the arrival time; batch jobs pass None so old files score deterministically).
    """
    results = []
    for i, msg in enumerate(messages):
        sev = {label: float(p) for label, p in zip(SEVERITY_LABELS, preds.severity[i])}
        sen = {label: float(p) for label, p in zip(SENTIMENT_LABELS, preds.sentiment[i])}
        fol_p = float(preds.followup[i])
        fol = fol_p >= threshold
        author = msg.author
        prio, reasons = priority(Signals(
            severity_scores=sev, private_followup=fol, private_followup_probability=fol_p,
            channel=msg.channel, followers=author.followers if author else None,
            verified=author.verified if author else None, promoted=msg.promoted,
            prior_contacts=msg.prior_contacts, when=msg.created_at or received_at), cfg)
        complaint_p = 1.0 - sev["none"]
        results.append(Result(
            id=msg.id, severity=max(sev, key=sev.__getitem__), severity_scores=sev,
            complaint_probability=complaint_p, is_complaint=complaint_p >= 0.5,
            private_followup=fol, private_followup_probability=fol_p,
            sentiment=max(sen, key=sen.__getitem__), sentiment_scores=sen,
            language=detect_language(msg.text), priority=prio, priority_reasons=reasons,
            truncated=bool(preds.truncated[i])))
    return results


def score_messages(scorer: Scorer, messages: Sequence[Message], cfg: PriorityConfig,
                   received_at: datetime | None = None) -> list[Result]:
    """In-process scoring of a list of messages (the reference the service must equal)."""
    preds = scorer.predict([m.text for m in messages])
    return build_results(messages, preds, scorer.meta.followup_threshold, cfg, received_at)
