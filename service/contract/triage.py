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
from model.labels import PUBLIC_CHANNELS, SENTIMENT_LABELS, SEVERITY_LABELS
from model.scorer import Predictions, Scorer
from service.contract.langid import detect_language
from service.contract.pii import detect_personal_data
from service.contract.priority import PriorityConfig, Signals, priority
from service.contract.routing import RouteSignals, RoutingConfig, default_routing, route
from service.contract.schemas import Message, Result, Route


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


def _route_labels(severity: str, sentiment: str, complaint: bool, untrained: frozenset[str]) -> dict[str, object]:
    """The labels the routing rules see: an untrained head's guess is replaced by its neutral value
    (severity ``none`` and no complaint; a complaint counts as ``medium`` when only levels are
    untrained; sentiment ``neutral``)."""
    if "severity" in untrained:
        severity, complaint = "none", False
    elif "severity_levels" in untrained:
        severity = "medium" if complaint else "none"
    if "sentiment" in untrained:
        sentiment = "neutral"
    return {"severity": severity, "sentiment": sentiment, "is_complaint": complaint}


def build_results(messages: Sequence[Message], preds: Predictions, thresholds: Thresholds, cfg: PriorityConfig,
                  received_at: datetime | None = None, *, routing: RoutingConfig | None = None,
                  history: Sequence[int | None] | None = None) -> list[Result]:
    """Turn head probabilities into contract results (input order preserved).

    ``received_at`` stands in for a missing ``created_at`` when judging business hours and the
    SLA (the HTTP API passes the arrival time; batch jobs pass None so old files score
    deterministically). ``history`` holds, per message, the earlier contacts the contact store
    counted for its ``customer_key`` (None: not looked up); a ``prior_contacts`` the caller sent
    wins over it. A public post that exposes personal data needs a private follow-up whatever the
    model says. ``routing`` defaults to the shipped rules.
    """
    routing = routing or default_routing()
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
        pii = tuple(detect_personal_data(msg.text))
        exposed = pii if msg.channel in PUBLIC_CHANNELS else ()
        fol = fol or bool(exposed)
        prior = msg.prior_contacts if isinstance(msg.prior_contacts, int) else (history[i] if history else None) or 0
        when = msg.created_at or received_at
        prio_sev, reason = _priority_scores(sev, thresholds.untrained)
        prio, reasons = priority(Signals(
            severity_scores=prio_sev, is_complaint=complaint and "severity" not in thresholds.untrained,
            private_followup=fol, private_followup_probability=fol_p,
            channel=msg.channel, followers=author.followers if author else None,
            verified=author.verified if author else None, promoted=msg.promoted,
            prior_contacts=prior, when=when, personal_data=exposed), cfg)
        if reason is not None:
            reasons[0] = reason
        severity, sentiment, language = (SEVERITY_LABELS[int(dec.severity[i])],
                                         SENTIMENT_LABELS[int(dec.sentiment[i])], detect_language(msg.text))
        queue, channel, respond_by, why = route(RouteSignals(**_route_labels(severity, sentiment, complaint,
                                                                             thresholds.untrained),
            private_followup=fol, personal_data=pii, language=language, channel=msg.channel,
            prior_contacts=prior, when=when), routing)
        results.append(_null_untrained(Result(
            id=msg.id, severity=severity, severity_scores=sev,
            complaint_probability=complaint_p, is_complaint=complaint,
            private_followup=fol, private_followup_probability=fol_p,
            sentiment=sentiment, sentiment_scores=sen,
            language=language, priority=prio, priority_reasons=reasons,
            truncated=bool(preds.truncated[i]), warnings=list(msg.warnings), exposes_personal_data=list(pii),
            route=Route(queue=queue, channel=channel,  # type: ignore[arg-type]
                        respond_by=respond_by.isoformat() if respond_by else None, reasons=why)),
            thresholds.untrained))
    return results


def score_messages(scorer: Scorer, messages: Sequence[Message], cfg: PriorityConfig,
                   received_at: datetime | None = None, *, routing: RoutingConfig | None = None,
                   history: Sequence[int | None] | None = None) -> list[Result]:
    """In-process scoring of a list of messages (the reference the service must equal)."""
    preds = scorer.predict([m.text for m in messages])
    return build_results(messages, preds, bundle_thresholds(scorer.meta), cfg, received_at, routing=routing,
                         history=history)
