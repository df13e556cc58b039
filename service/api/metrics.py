"""Prometheus metrics of the scoring path (module-level: one set per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCH_SIZE = Histogram("ct_batch_size", "Messages per model batch",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
BATCH_SECONDS = Histogram("ct_batch_seconds", "Model time per batch",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
QUEUE_DEPTH = Gauge("ct_queue_depth", "Messages waiting for the model")
MESSAGES = Counter("ct_messages_scored_total", "Messages scored")
PREDICTIONS = Counter("ct_predictions_total", "Predicted labels", ["head", "label"])
ERRORS = Counter("ct_errors_total", "Requests rejected or failed, by kind", ["kind"])
FEEDBACK = Counter("ct_feedback_total", "Feedback records stored")
CORRECTIONS = Counter("ct_feedback_corrections_total", "Labels corrected by agents, per head", ["head"])
ROUTES = Counter("ct_routes_total", "Routed messages per queue and channel", ["queue", "channel"])
HISTORY = Counter("ct_history_lookups_total", "Contact-history lookups by outcome", ["outcome"])
MEMORY_TRIMS = Counter("ct_memory_trims_total", "Freed memory returned to the OS after the model went idle")
DROPPED = Counter("ct_messages_dropped_total", "Queued messages dropped before the model because their client disconnected")
