"""Distillation: a shallower student initialised from the fine-tuned teacher's own layers.

The student is the teacher with only some encoder layers kept (default: 6 of 12, the first and
the last included, so the embeddings, the heads and the top layer the heads were trained on all
start where the teacher ended). It is trained on the training split with

    loss = (1 − α) · the usual multi-task loss on the gold labels
         + α · T² · (KL(teacher ‖ student) of severity and sentiment at temperature T
                     + BCE of follow-up against the teacher's sigmoid at T)
         + β · MSE(student sentence vector, teacher sentence vector)

The teacher's outputs are computed once, before training, with the teacher in eval mode (no
dropout), so a distillation step costs no teacher forward pass. Everything else (length-grouped
batches, AdamW, warm-up, validation, early stopping, the wall-clock budget, per-epoch resume
state) is the teacher's training loop (training.train.train).

The student has the architecture of the teacher with fewer layers, so export, the conversion
gate, the runtime and the service need nothing new. The pipeline (training.pipeline) ships it
only when it passes the student gate: no head may lose more than ``max_student_f1_drop`` macro-F1
against the teacher on test, challenge or field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from model.text import TextEncoder
from training.data import Example
from training.modeling import MultiTaskModel


def parse_layers(spec: str, n_layers: int) -> tuple[int, ...]:
    """``"0,2,4,7,9,11"`` or a count ``"6"`` (evenly spread, first and last kept) → layer indices."""
    spec = spec.strip()
    if not spec:
        return ()
    if "," not in spec:
        k = int(spec)
        if not 1 <= k < n_layers:
            raise ValueError(f"student layers: {k} is not between 1 and {n_layers - 1} (the teacher has {n_layers})")
        if k == 1:
            return (n_layers - 1,)
        return tuple(int(round(i * (n_layers - 1) / (k - 1))) for i in range(k))
    layers = tuple(int(x) for x in spec.split(","))
    if sorted(set(layers)) != list(layers) or not all(0 <= i < n_layers for i in layers):
        raise ValueError(f"student layers {spec!r}: need increasing distinct indices in 0..{n_layers - 1}")
    if len(layers) >= n_layers:
        raise ValueError(f"student layers {spec!r}: a student keeps fewer than the teacher's {n_layers} layers")
    return layers


def make_student(teacher: MultiTaskModel, layers: Sequence[int], freeze_layers: int = 0) -> MultiTaskModel:
    """A copy of ``teacher`` keeping only ``layers`` of its encoder (all weights copied); the
    embeddings stay frozen as in the teacher, and the lowest ``freeze_layers`` kept layers too."""
    student = copy.deepcopy(teacher)
    bert = student.encoder
    bert.encoder.layer = nn.ModuleList([bert.encoder.layer[i] for i in layers])
    bert.config.num_hidden_layers = len(layers)
    for p in student.parameters():
        p.requires_grad_(True)
    bert.embeddings.requires_grad_(False)
    for layer in bert.encoder.layer[:freeze_layers]:
        layer.requires_grad_(False)
    if getattr(bert, "pooler", None) is not None:
        bert.pooler.requires_grad_(False)  # mean pooling: the BERT pooler is never used
    return student


@dataclass
class TeacherTargets:
    """The teacher's outputs on the training rows, in row order."""

    severity: torch.Tensor   # [n, K] logits (CORN: log-probabilities, as the eval graph emits)
    followup: torch.Tensor   # [n, 1]
    sentiment: torch.Tensor  # [n, 3]
    sentence: torch.Tensor   # [n, hidden]


@torch.no_grad()
def teacher_targets(teacher: MultiTaskModel, encoder: TextEncoder, examples: Sequence[Example],
                    batch_size: int = 64, bf16: bool = False) -> TeacherTargets:
    """One eval-mode pass of the teacher over ``examples`` (batched by length; bf16 autocast as in
    training when ``bf16``)."""
    from training.train import autocast

    teacher.eval()
    ids, _ = encoder.token_ids([e.text for e in examples])
    order = np.argsort([len(r) for r in ids], kind="stable")
    n = len(examples)
    hidden = int(teacher.encoder.config.hidden_size)
    out = [torch.zeros(n, teacher.severity.out_features), torch.zeros(n, 1), torch.zeros(n, 3), torch.zeros(n, hidden)]
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        enc = encoder.pad([ids[i] for i in rows], [False] * len(rows))
        with autocast(bf16):
            res = teacher(torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask), with_pooled=True)
        idx = torch.from_numpy(np.asarray(rows))
        for o, r in zip(out, res):
            o[idx] = r.float()
    return TeacherTargets(*out)


@dataclass(frozen=True)
class DistillLoss:
    """The distillation terms for one batch; ``alpha`` weighs soft against gold labels."""

    targets: TeacherTargets
    temperature: float = 2.0
    alpha: float = 0.7
    beta: float = 1.0
    corn: bool = False

    def __call__(self, outputs: Sequence[torch.Tensor], rows: Sequence[int], hard: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(list(rows))
        sev, fol, sen, sentence = (o.float() for o in outputs)
        t = self.temperature
        tgt = self.targets
        if self.corn:  # the student's training graph emits conditional logits; compare the class distributions
            from training.modeling import corn_log_probs

            s_sev = corn_log_probs(sev)
            kd_sev = F.kl_div(s_sev, tgt.severity[idx], log_target=True, reduction="batchmean")
        else:
            kd_sev = F.kl_div(F.log_softmax(sev / t, 1), F.log_softmax(tgt.severity[idx] / t, 1),
                              log_target=True, reduction="batchmean") * t * t
        kd_sen = F.kl_div(F.log_softmax(sen / t, 1), F.log_softmax(tgt.sentiment[idx] / t, 1),
                          log_target=True, reduction="batchmean") * t * t
        kd_fol = F.binary_cross_entropy_with_logits(fol / t, torch.sigmoid(tgt.followup[idx] / t)) * t * t
        mse = F.mse_loss(sentence, tgt.sentence[idx])
        return (1 - self.alpha) * hard + self.alpha * (kd_sev + kd_sen + kd_fol) + self.beta * mse
