"""Multi-task model: one shared encoder, mean pooling, three heads; masked multi-task loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS

IGNORE = -1
#: severity head variants: plain 5-way softmax; softmax trained on soft targets that give the
#: neighbouring levels some mass; CORN (conditional ordinal: 4 binary "level > k" logits whose
#: products give the 5 class probabilities, Shi et al. 2021)
SEVERITY_LOSSES = ("softmax", "soft", "corn")


class MultiTaskModel(nn.Module):
    """Encoder + mean pooling + severity (5-way), private follow-up (1 logit), sentiment (3-way)."""

    def __init__(self, encoder: nn.Module, hidden_size: int, dropout: float = 0.1,
                 severity_loss: str = "softmax") -> None:
        super().__init__()
        if severity_loss not in SEVERITY_LOSSES:
            raise ValueError(f"severity_loss must be one of {SEVERITY_LOSSES}, got {severity_loss!r}")
        self.encoder = encoder
        self.severity_loss = severity_loss
        self.dropout = nn.Dropout(dropout)
        n_sev = len(SEVERITY_LABELS) - 1 if severity_loss == "corn" else len(SEVERITY_LABELS)
        self.severity = nn.Linear(hidden_size, n_sev)
        self.followup = nn.Linear(hidden_size, 1)
        self.sentiment = nn.Linear(hidden_size, len(SENTIMENT_LABELS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, with_pooled: bool = False
                ) -> tuple[torch.Tensor, ...]:
        """(severity, follow-up, sentiment) logits; with ``with_pooled`` also the pooled sentence
        vector before dropout (distillation matches it to the teacher's). The export uses the default."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        sentence = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        pooled = self.dropout(sentence)
        sev = self.severity(pooled)
        if self.severity_loss == "corn" and not self.training:
            # the exported graph emits log-probabilities, so softmax at serving time returns
            # exactly the CORN class probabilities and the runtime needs no special case
            sev = corn_log_probs(sev)
        if with_pooled:
            return sev, self.followup(pooled), self.sentiment(pooled), sentence
        return sev, self.followup(pooled), self.sentiment(pooled)

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.severity.parameters(), *self.followup.parameters(), *self.sentiment.parameters()]


def corn_log_probs(cond_logits: torch.Tensor) -> torch.Tensor:
    """[n, K-1] conditional logits P(y > k | y > k-1) → [n, K] log class probabilities."""
    cond = torch.sigmoid(cond_logits.float())
    cols = [cond[:, :1]]
    for k in range(1, cond.shape[1]):  # running product, unrolled: ONNX export has no cumprod
        cols.append(cols[-1] * cond[:, k:k + 1])
    above = torch.cat(cols, dim=1)  # P(y > k), k = 0..K-2
    ones = above.new_ones((above.shape[0], 1))
    zeros = above.new_zeros((above.shape[0], 1))
    probs = torch.cat([ones, above], dim=1) - torch.cat([above, zeros], dim=1)
    return torch.log(probs.clamp(min=1e-7))


def _wmean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-row losses, weighted when row weights are given."""
    if weights is None:
        return values.mean()
    return (values * weights).sum() / weights.sum().clamp(min=1e-12)


def corn_loss(cond_logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """CORN: for threshold k, rows with y >= k learn whether y > k (mean over the subsets)."""
    total, terms = cond_logits.new_zeros(()), 0
    for k in range(cond_logits.shape[1]):
        rows = target >= k
        if rows.any():
            per_row = F.binary_cross_entropy_with_logits(cond_logits[rows, k], (target[rows] > k).float(),
                                                         reduction="none")
            total = total + _wmean(per_row, None if weights is None else weights[rows])
            terms += 1
    return total / max(terms, 1)


def complaint_loss(logits: torch.Tensor, complaint: torch.Tensor, kind: str,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy on P(severity != none) for rows with only a coarse complaint label.

    softmax/soft heads: log P(complaint) = logsumexp(levels 1-4) − logsumexp(all levels);
    CORN: P(severity > none) is the first conditional logit's sigmoid."""
    y = complaint.float()
    if kind == "corn":
        per_row = F.binary_cross_entropy_with_logits(logits[:, 0].float(), y, reduction="none")
    else:
        z = logits.float()
        log_all = torch.logsumexp(z, dim=1)
        log_c = torch.logsumexp(z[:, 1:], dim=1) - log_all
        log_none = z[:, 0] - log_all
        per_row = -(y * log_c + (1 - y) * log_none)
    return _wmean(per_row, weights)


def soft_targets(target: torch.Tensor, n_classes: int, neighbour: float = 0.1) -> torch.Tensor:
    """One-hot targets with ``neighbour`` mass moved to each adjacent level (ordinal smoothing)."""
    out = torch.zeros((target.shape[0], n_classes), device=target.device)
    out[torch.arange(target.shape[0]), target] = 1.0
    for shift in (-1, 1):
        nb = target + shift
        ok = (nb >= 0) & (nb < n_classes)
        out[torch.arange(target.shape[0])[ok], nb[ok]] = neighbour
        out[torch.arange(target.shape[0])[ok], target[ok]] -= neighbour
    return out


def severity_loss(logits: torch.Tensor, target: torch.Tensor, kind: str,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """Loss of the severity head on labeled rows (target != IGNORE)."""
    keep = target != IGNORE
    logits, target = logits[keep], target[keep]
    w = None if weights is None else weights[keep]
    if kind == "corn":
        return corn_loss(logits, target, w)
    if kind == "soft":
        return _wmean(-(soft_targets(target, logits.shape[1]) * F.log_softmax(logits.float(), dim=1)).sum(1), w)
    return _wmean(F.cross_entropy(logits.float(), target, reduction="none"), w)


def load_model(backbone_path: str, dropout: float, freeze_embeddings: bool, severity_loss: str = "softmax",
               freeze_layers: int = 0) -> MultiTaskModel:
    """Load a pretrained encoder directory and attach freshly initialised heads."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    encoder = AutoModel.from_pretrained(backbone_path, attn_implementation="eager")
    if freeze_embeddings:
        # the 250k-row vocabulary matrix dominates parameters and optimizer time; freezing it
        # made steps ~3x faster at the same loss in trials on e5-small
        encoder.get_input_embeddings().weight.requires_grad_(False)
    if freeze_layers:
        # no gradient flows below the first trainable layer, so backward skips the frozen ones
        layers = encoder.encoder.layer
        if freeze_layers > len(layers):
            raise ValueError(f"freeze_layers={freeze_layers} but the backbone has {len(layers)} layers")
        for module in [encoder.embeddings, *layers[:freeze_layers]]:
            module.requires_grad_(False)
    return MultiTaskModel(encoder, encoder.config.hidden_size, dropout, severity_loss)


def multitask_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                   severity: torch.Tensor, followup: torch.Tensor, sentiment: torch.Tensor,
                   weights: tuple[float, float, float] = (1.0, 1.0, 1.0), kind: str = "softmax",
                   complaint: torch.Tensor | None = None, row_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of the three head losses; rows whose label is -1 are ignored for that head.

    ``complaint`` holds coarse 0/1 labels for rows without a severity level: their loss on
    P(severity != none) joins the severity term, averaged with the level loss by (weighted) row count.
    ``row_weights`` (optional) weight each row's contribution to every head."""
    sev_logits, fol_logit, sen_logits = (o.float() for o in outputs)
    total = sev_logits.new_zeros(())
    has_sev = severity != IGNORE
    coarse = (complaint != IGNORE) & ~has_sev if complaint is not None else torch.zeros_like(has_sev)
    w_all = row_weights if row_weights is not None else torch.ones(has_sev.shape[0])
    w_sev, w_c = w_all[has_sev].sum(), w_all[coarse].sum()  # each term counts by its rows' total weight
    if has_sev.any() or coarse.any():
        sev_term = sev_logits.new_zeros(())
        if has_sev.any():
            sev_term = sev_term + w_sev * severity_loss(sev_logits, severity, kind, row_weights)
        if coarse.any():
            assert complaint is not None
            w = None if row_weights is None else row_weights[coarse]
            sev_term = sev_term + w_c * complaint_loss(sev_logits[coarse], complaint[coarse], kind, w)
        total = total + weights[0] * sev_term / (w_sev + w_c)
    known = followup != IGNORE
    if known.any():
        w = None if row_weights is None else row_weights[known]
        total = total + weights[1] * _wmean(F.binary_cross_entropy_with_logits(
            fol_logit[:, 0][known], followup[known].to(fol_logit.dtype), reduction="none"), w)
    known = sentiment != IGNORE
    if known.any():
        w = None if row_weights is None else row_weights[known]
        total = total + weights[2] * _wmean(F.cross_entropy(sen_logits[known], sentiment[known],
                                                            reduction="none"), w)
    return total
