"""Fine-tuning loop: length-grouped batches, AdamW with warm-up, per-epoch validation,
early stopping on the mean of the three heads' macro-F1, and a wall-clock budget."""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.metrics import f1_score
from tqdm.auto import tqdm

from model.text import TextEncoder
from training.config import TrainConfig
from training.data import MISSING, Example
from training.modeling import MultiTaskModel, multitask_loss


@dataclass
class TrainResult:
    """What the loop did, for the bundle metadata."""

    epochs_run: int = 0
    best_epoch: int = 0
    best_score: float = float("-inf")
    steps: int = 0
    seconds: float = 0.0
    stopped_by: str = "epochs"
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort within windows of 50 batches by length, then shuffle the batches."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(idx), window):
        chunk = sorted(idx[start:start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _labels(examples: Sequence[Example], rows: Sequence[int]) -> tuple[torch.Tensor, ...]:
    return (torch.tensor([examples[i].severity for i in rows]),
            torch.tensor([examples[i].followup for i in rows]),
            torch.tensor([examples[i].sentiment for i in rows]))


def _extras(examples: Sequence[Example], rows: Sequence[int], weighted: bool) -> dict[str, torch.Tensor | None]:
    """Coarse complaint labels and (when any row is weighted) row weights for one batch."""
    return {"complaint": torch.tensor([examples[i].complaint for i in rows]),
            "row_weights": torch.tensor([examples[i].weight for i in rows], dtype=torch.float32) if weighted
            else None}


def _inputs(encoder: TextEncoder, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = encoder.pad(ids, [False] * len(ids))
    return torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask)


@torch.no_grad()
def predict_torch(model: MultiTaskModel, encoder: TextEncoder, texts: Sequence[str],
                  batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw logits of the torch model (used for validation and ONNX parity)."""
    model.eval()
    ids, _ = encoder.token_ids(texts)
    order = np.argsort([len(r) for r in ids], kind="stable")
    outs = [np.zeros((len(texts), 5)), np.zeros((len(texts), 1)), np.zeros((len(texts), 3))]
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        logits = model(*_inputs(encoder, [ids[i] for i in rows]))
        for out, lg in zip(outs, logits):
            out[rows] = lg.float().numpy()
    return outs[0], outs[1], outs[2]


def validation_score(model: MultiTaskModel, encoder: TextEncoder, examples: Sequence[Example]) -> dict[str, float]:
    """Macro-F1 per head on labeled rows (thresholds 0.5) and their mean; the severity head counts
    with its 5-level macro-F1, or with the complaint macro-F1 when the rows carry only coarse labels."""
    from model.decisions import decide_arrays
    from model.scorer import sigmoid, softmax

    sev, fol, sen = predict_torch(model, encoder, [e.text for e in examples])
    dec = decide_arrays(softmax(sev), sigmoid(fol[:, 0]), softmax(sen), 0.5, 0.5)
    scores: dict[str, float] = {}
    for name, pred, gold in (
        ("severity", dec.severity, [e.severity for e in examples]),
        ("complaint", dec.is_complaint.astype(int), [e.complaint_gold for e in examples]),
        ("private_followup", (fol[:, 0] > 0).astype(int), [e.followup for e in examples]),
        ("sentiment", sen.argmax(1), [e.sentiment for e in examples]),
    ):
        keep = np.asarray(gold) != MISSING
        if keep.any():
            scores[name] = float(f1_score(np.asarray(gold)[keep], pred[keep], average="macro"))
    heads = [scores.get("severity", scores.get("complaint")), scores.get("private_followup"), scores.get("sentiment")]
    known = [v for v in heads if v is not None]
    scores["mean"] = float(np.mean(known)) if known else 0.0
    return scores


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX). Elsewhere torch emulates it, and
    bf16 autocast trains slower than fp32: 10.2 against 27.9 samples/s on an avx512 CPU without
    avx512_bf16 (``python -m tools.train_speed``, 4 frozen layers, batch 32)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume emulation
        return False


def autocast(enabled: bool) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CPU when enabled (matmuls in bf16, reductions and the loss in fp32)."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def _optimizer(model: MultiTaskModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    head_ids = {id(p) for p in model.head_parameters()}
    enc = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    return torch.optim.AdamW([
        {"params": enc, "lr": cfg.learning_rate},
        {"params": model.head_parameters(), "lr": cfg.head_learning_rate},
    ], weight_decay=cfg.weight_decay)


def _trainable_state(model: MultiTaskModel) -> dict[str, torch.Tensor]:
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in frozen}


def train(model: MultiTaskModel, encoder: TextEncoder, train_set: Sequence[Example],
          val_set: Sequence[Example], cfg: TrainConfig,
          on_epoch_end: Callable[[int, TrainResult], None] | None = None,
          distill: Callable[..., torch.Tensor] | None = None) -> TrainResult:
    """Fine-tune in place; on return the model holds the best epoch's weights.

    ``distill`` (training.distill.DistillLoss) turns the loss into a distillation loss: it gets the
    outputs with the sentence vector, the batch's row indices and the gold-label loss.

    After every epoch the whole loop state goes to ``cfg.ckpt / resume.pt``; with ``cfg.resume``
    the loop continues from there, so an interrupted run ends where an uninterrupted one would.
    ``on_epoch_end`` is called after each checkpoint (progress reporting; tests interrupt there)."""
    from transformers import get_linear_schedule_with_warmup

    from training.checkpoint import load_resume, rng_state, save_resume, set_rng_state

    seed_everything(cfg.seed)
    rng = random.Random(cfg.seed)
    ids, _ = encoder.token_ids([e.text for e in train_set])
    lengths = [len(r) for r in ids]
    weighted = any(e.weight != 1.0 for e in train_set)
    steps_per_epoch = -(-len(train_set) // cfg.batch_size)
    opt = _optimizer(model, cfg)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * steps_per_epoch * cfg.epochs),
                                            steps_per_epoch * cfg.epochs)
    result, best_state, bad_epochs, start_epoch, spent = TrainResult(), None, 0, 1, 0.0
    config = cfg.to_dict()
    if cfg.resume:
        state = load_resume(cfg.ckpt, config)
        model.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(rng, state["rng"])
        result, best_state, bad_epochs = state["result"], state["best_state"], state["bad_epochs"]
        start_epoch, spent = state["epoch"] + 1, state["elapsed_s"]
        print(f"resuming after epoch {state['epoch']} (step {result.steps}) from {cfg.ckpt}", flush=True)
        if state.get("finished"):
            start_epoch = cfg.epochs + 1
    t0 = time.monotonic() - spent
    finished = False
    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        bar = tqdm(length_grouped_batches(lengths, cfg.batch_size, rng), desc=f"epoch {epoch}/{cfg.epochs}",
                   unit="batch", dynamic_ncols=True)
        running, total, n = 0.0, 0.0, 0
        for step, rows in enumerate(bar, 1):
            with autocast(cfg.bf16):
                outputs = model(*_inputs(encoder, [ids[i] for i in rows]), with_pooled=distill is not None)
            loss = multitask_loss(outputs[:3], *_labels(train_set, rows), weights=cfg.loss_weights,
                                  kind=cfg.severity_loss, **_extras(train_set, rows, weighted))
            if distill is not None:
                loss = distill(outputs, rows, loss)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            result.steps += 1
            value = loss.item()
            total, n = total + value, n + 1
            running = 0.9 * running + 0.1 * value if step > 1 else value
            bar.set_postfix(loss=f"{running:.3f}")
            if time.monotonic() - t0 > cfg.time_budget_s:
                result.stopped_by = "time_budget"
                break
        bar.close()
        scores = validation_score(model, encoder, val_set) if val_set else {"mean": -float(epoch)}
        result.history.append({"epoch": epoch, "steps": result.steps, "loss": total / max(n, 1), **scores})
        result.epochs_run = epoch
        print(f"epoch {epoch}: loss {total / max(n, 1):.3f}  validation " +
              "  ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)
        if scores["mean"] > result.best_score:
            result.best_score, result.best_epoch, bad_epochs = scores["mean"], epoch, 0
            best_state = _trainable_state(model)
        else:
            bad_epochs += 1
        if result.stopped_by == "time_budget":
            finished = True
        elif val_set and bad_epochs > cfg.patience:
            result.stopped_by, finished = "early_stopping", True
        result.seconds = time.monotonic() - t0
        save_resume(cfg.ckpt, {"model": _trainable_state(model), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "rng": rng_state(rng), "result": result,
                               "best_state": best_state, "bad_epochs": bad_epochs, "epoch": epoch,
                               "elapsed_s": result.seconds, "config": config,
                               "finished": finished or epoch == cfg.epochs})
        if on_epoch_end is not None:
            on_epoch_end(epoch, result)
        if finished:
            break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    result.seconds = time.monotonic() - t0
    return result
