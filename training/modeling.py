"""Multi-task model: one shared encoder, mean pooling, three heads; masked multi-task loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS

IGNORE = -1


class MultiTaskModel(nn.Module):
    """Encoder + mean pooling + severity (5-way), private follow-up (1 logit), sentiment (3-way)."""

    def __init__(self, encoder: nn.Module, hidden_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.severity = nn.Linear(hidden_size, len(SEVERITY_LABELS))
        self.followup = nn.Linear(hidden_size, 1)
        self.sentiment = nn.Linear(hidden_size, len(SENTIMENT_LABELS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        pooled = self.dropout(pooled)
        return self.severity(pooled), self.followup(pooled), self.sentiment(pooled)

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.severity.parameters(), *self.followup.parameters(), *self.sentiment.parameters()]


def load_model(backbone_path: str, dropout: float, freeze_embeddings: bool) -> MultiTaskModel:
    """Load a pretrained encoder directory and attach freshly initialised heads."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    encoder = AutoModel.from_pretrained(backbone_path, attn_implementation="eager")
    if freeze_embeddings:
        # the 250k-row vocabulary matrix dominates parameters and optimizer time; freezing it
        # made steps ~3x faster at the same loss in trials on e5-small
        encoder.get_input_embeddings().weight.requires_grad_(False)
    return MultiTaskModel(encoder, encoder.config.hidden_size, dropout)


def multitask_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                   severity: torch.Tensor, followup: torch.Tensor, sentiment: torch.Tensor,
                   weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """Sum of the three head losses; rows whose label is -1 are ignored for that head."""
    sev_logits, fol_logit, sen_logits = outputs
    total = sev_logits.new_zeros(())
    if (severity != IGNORE).any():
        total = total + weights[0] * F.cross_entropy(sev_logits, severity, ignore_index=IGNORE)
    known = followup != IGNORE
    if known.any():
        total = total + weights[1] * F.binary_cross_entropy_with_logits(
            fol_logit[:, 0][known], followup[known].to(fol_logit.dtype))
    if (sentiment != IGNORE).any():
        total = total + weights[2] * F.cross_entropy(sen_logits, sentiment, ignore_index=IGNORE)
    return total
