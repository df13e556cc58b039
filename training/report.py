"""Evaluate a bundle on the test and challenge splits beside the baseline; write the report,
plots and model card into the bundle."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

from model.bundle import BundleMeta, read_meta, write_meta
from model.scorer import Scorer
from training.data import Example
from training.evaluate import Baseline, bundle_decisions, evaluate, plot_confusions, plot_reliability

HEADS = ("severity", "private_followup", "sentiment")


def summary(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Macro-F1 per head; None for a head without labels in the set or not trained."""
    return {h: None if metrics[h].get("macro_f1") is None else round(float(metrics[h]["macro_f1"]), 4)
            for h in HEADS}


def skip_untrained(metrics: dict[str, Any], untrained: dict[str, str]) -> dict[str, Any]:
    """Replace the metrics of heads the bundle did not train (their outputs are noise) by the reason."""
    out = dict(metrics)
    for head, why in untrained.items():
        if head == "severity_levels":  # complaint figures stay, level figures go
            sev = out["severity"]
            out["severity"] = {"n": 0, "untrained": why, **{k: sev[k] for k in ("complaint_macro_f1",
                                                                                 "complaint_auc") if k in sev}}
        else:
            out[head] = {"n": 0, "untrained": why}
            if head == "severity":
                out.pop("complaint", None)
    for lang_row in out.get("per_language", {}).values():
        for head in untrained:
            lang_row[head.replace("_levels", "")] = None
    return out


def ordinal_summary(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Complaint-level and ordinal severity figures of one evaluation (rounded for the bundle)."""
    sev, fol = metrics["severity"], metrics["private_followup"]
    comp = metrics.get("complaint", {})
    sev = {**sev, "complaint_macro_f1": comp.get("macro_f1", sev.get("complaint_macro_f1")),
           "complaint_auc": comp.get("auc", sev.get("complaint_auc"))}
    keys = ("complaint_macro_f1", "complaint_auc", "mae", "qwk", "within_one")
    out = {k: None if sev.get(k) is None else round(float(sev[k]), 4) for k in keys}
    out["followup_auc"] = None if fol.get("auc") is None else round(float(fol["auc"]), 4)
    return out


def evaluate_bundle(bundle_dir: Path, train: Sequence[Example], sets: dict[str, Sequence[Example]],
                    seed: int = 13) -> dict[str, Any]:
    """Score every evaluation set with the bundle and with the baseline; write report files."""
    scorer = Scorer.load(bundle_dir)
    meta = scorer.meta
    baseline = Baseline(seed).fit(train) if train else None
    report: dict[str, Any] = {"untrained_heads": meta.untrained_heads, "followup_threshold": meta.followup_threshold,
                              "complaint_threshold": meta.complaint_threshold,
                              "temperatures": meta.temperatures, "sets": {}}
    for name, examples in sets.items():
        if not examples:
            continue
        preds = scorer.predict([e.text for e in examples])
        model_metrics = skip_untrained(evaluate(examples, bundle_decisions(preds, meta), preds),
                                       meta.untrained_heads)
        entry: dict[str, Any] = {"n": len(examples), "model": model_metrics, "model_macro_f1": summary(model_metrics)}
        if baseline is not None:
            base_metrics = evaluate(examples, baseline.predict(examples))
            entry["baseline"] = base_metrics
            entry["baseline_macro_f1"] = summary(base_metrics)
        plot_confusions(model_metrics, f"{scorer.meta.name} {scorer.meta.version}: {name} split",
                        bundle_dir / f"confusion_{name}.png")
        entry["ece"] = plot_reliability(examples, preds, bundle_dir / f"reliability_{name}.png",
                                        f"Reliability ({name})")
        report["sets"][name] = entry
    (bundle_dir / "eval_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (bundle_dir / "eval_report.md").write_text(markdown_report(report) + "\n")
    meta = read_meta(bundle_dir)
    metrics = {**meta.metrics, "evaluation": {k: {**{kk: v[kk] for kk in v if kk.endswith("macro_f1") or kk in ("n", "ece")},
                                                  "severity_ordinal": ordinal_summary(v["model"])}
                                              for k, v in report["sets"].items()}}
    write_meta(bundle_dir, dataclasses.replace(meta, metrics=metrics))
    write_model_card(bundle_dir)
    return report


def markdown_report(report: dict[str, Any]) -> str:
    """Macro-F1 table per set and head, model vs baseline, plus per-language rows."""
    lines = ["| set | n | head | model macro-F1 | baseline macro-F1 |", "|---|---:|---|---:|---:|"]
    for name, entry in report["sets"].items():
        for head in HEADS:
            base = entry.get("baseline_macro_f1", {}).get(head)
            model = entry["model_macro_f1"][head]
            shown = ("untrained" if entry["model"][head].get("untrained") else "–") if model is None else f"{model:.3f}"
            lines.append(f"| {name} | {entry['n']} | {head} | {shown} | {'' if base is None else f'{base:.3f}'} |")
    lines += ["", "Complaint (severity != none) and ordinal severity, model:", "",
              "| set | complaint macro-F1 | complaint AUC | severity MAE | severity QWK | within one | follow-up AUC |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, entry in report["sets"].items():
        o = ordinal_summary(entry["model"])
        lines.append(f"| {name} | " + " | ".join("" if o[k] is None else f"{o[k]:.3f}" for k in
                     ("complaint_macro_f1", "complaint_auc", "mae", "qwk", "within_one", "followup_auc")) + " |")
    for name, entry in report["sets"].items():
        lines += ["", f"Per language ({name}, model macro-F1):", "",
                  "| lang | n | severity | private_followup | sentiment |", "|---|---:|---:|---:|---:|"]
        for lang, row in entry["model"]["per_language"].items():
            cells = " | ".join("" if row[h] is None else f"{row[h]:.3f}" for h in HEADS)
            lines.append(f"| {lang} | {row['n']} | {cells} |")
    return "\n".join(lines)


def write_model_card(bundle_dir: Path) -> Path:
    """MODEL_CARD.md generated from bundle.json and the evaluation report."""
    meta: BundleMeta = read_meta(bundle_dir)
    report_path = bundle_dir / "eval_report.md"
    report = report_path.read_text() if report_path.exists() else "(not evaluated yet)"
    m = meta.metrics
    conv = m.get("conversion", {})
    text = f"""# {meta.name} {meta.version}

Multilingual complaint triage: severity (5 levels), private follow-up (binary) and sentiment (3-way)
from one fine-tuned encoder, served with ONNX Runtime.

- Backbone: `{meta.backbone}`, max length {meta.max_length} tokens, prefix `{meta.prefix!r}`
- Weights: {meta.quantization} (int8 kept only if it agrees with fp32 on ≥ 99.5 % of test decisions
  and loses ≤ 1 macro-F1 point per head): {json.dumps(m.get('quantization', {}))}
- Conversion (vocabulary trim → graph optimisation → fp16 weight storage, each kept only if every
  head agrees with fp32 on ≥ {conv.get('min_agreement', 0.995)} of the decisions of every evaluation set):
  **{conv.get('kept', 'not run')}** ({conv.get('reason', '')}); model {conv.get('mib', '?')} MiB
  (fp32 {conv.get('fp32_mib', '?')} MiB); serving RSS {json.dumps(conv.get('serving_rss_mib', {}))};
  steps: {json.dumps([{k: v for k, v in s.items() if k in ('step', 'mib', 'worst', 'passed', 'agreement')}
                      for s in conv.get('steps', [])])}
- Decision thresholds (calibrated on the validation split): complaint = P(severity != none) ≥
  {meta.complaint_threshold}; private follow-up ≥ {meta.followup_threshold}; temperatures
  {json.dumps(meta.temperatures)}; training complaint rate {meta.complaint_rate}, complaint prior
  correction {meta.complaint_prior or 'off'}
- Heads not trained (served as null): {json.dumps(meta.untrained_heads) if meta.untrained_heads else 'none'}
- Training checkpoint (for `--init-from`): `{meta.checkpoint or 'none'}`
- Training data hash: `{meta.data_hash[:16]}…`, split sizes {json.dumps(meta.split.get('sizes', {}))}
- Training: {json.dumps(m.get('training', {}))}
- Created: {meta.created_at}

## Evaluation

{report}

Confusion matrices: `confusion_<set>.png`; calibration per head: `reliability_<set>.png`;
loss and validation metrics per epoch: `training_history.png`.

## Intended use and limits

Scores customer messages to brands for triage by a human care team. Trained on an authored
corpus (see `data/README.md`): expect lower accuracy on languages, industries and slang it does
not cover; severity is a judgement, and neighbouring levels are often confused. Do not use it to
take automated action against a customer.
"""
    path = bundle_dir / "MODEL_CARD.md"
    path.write_text(text)
    return path
