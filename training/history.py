"""The training history (per-epoch loss and validation metrics) as a PNG in the bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

METRICS = ("severity", "complaint", "private_followup", "sentiment", "mean")


def plot_history(history: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Left: mean training loss per epoch; right: validation macro-F1 per head and their mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(h["epoch"]) for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["loss"] for h in history], "o-", color="tab:red")
    left.set_xlabel("epoch")
    left.set_ylabel("mean training loss")
    left.set_title("training loss")
    for name in METRICS:
        points = [(h["epoch"], h[name]) for h in history if name in h and h[name] >= 0]
        if points:
            style = "k--" if name == "mean" else "o-"
            right.plot(*zip(*points), style, label=name)
    right.set_xlabel("epoch")
    right.set_ylabel("validation macro-F1")
    right.set_title("validation (thresholds 0.5)")
    right.set_ylim(0, 1)
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8, loc="lower right")
    for ax in (left, right):
        ax.set_xticks(epochs)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
