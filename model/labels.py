"""Label scheme, defined once.

Training, export, the bundle, the service and the tests import these tuples; nothing
retypes them. Order matters: it is the order of the model's output columns.
"""

from __future__ import annotations

SEVERITY_LABELS: tuple[str, ...] = ("none", "low", "medium", "high", "critical")
SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
FOLLOWUP_LABELS: tuple[str, ...] = ("false", "true")

#: Model heads and their output names in the ONNX graph.
HEADS: tuple[str, ...] = ("severity", "private_followup", "sentiment")
ONNX_OUTPUTS: tuple[str, ...] = ("severity_logits", "followup_logit", "sentiment_logits")

CHANNELS: tuple[str, ...] = (
    "twitter", "facebook", "instagram", "email", "chat", "sms", "review",
    "phone_transcript", "other",
)
#: Channels where the message is visible to the public.
PUBLIC_CHANNELS: frozenset[str] = frozenset({"twitter", "facebook", "instagram", "review"})


def labels_dict() -> dict[str, list[str]]:
    """The label lists as written into a bundle's metadata."""
    return {
        "severity": list(SEVERITY_LABELS),
        "sentiment": list(SENTIMENT_LABELS),
        "private_followup": list(FOLLOWUP_LABELS),
    }


def parse_bool_label(value: object) -> bool | None:
    """Parse a private-follow-up label from JSON/CSV/Parquet cells; None when missing.

    Raises ValueError on anything that is not recognisably a boolean.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if value != value:  # NaN from pandas/CSV means missing
            return None
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"private_followup must be 0/1 or a boolean, got {value!r}")
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in {"true", "1", "yes", "y", "t"}:
        return True
    if text in {"false", "0", "no", "n", "f"}:
        return False
    raise ValueError(f"private_followup must be true/false, got {value!r}")
