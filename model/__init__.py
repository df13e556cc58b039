"""Inference runtime: bundle loading and scoring with ONNX Runtime (no torch)."""

from model.labels import HEADS, SENTIMENT_LABELS, SEVERITY_LABELS
from model.scorer import Predictions, Scorer

__all__ = ["HEADS", "SENTIMENT_LABELS", "SEVERITY_LABELS", "Predictions", "Scorer"]
