"""Torch checkpoints beside a bundle: per-epoch resume state and the final weights for warm starts.

A bundle holds only ONNX (possibly vocabulary-trimmed or quantised), so training also writes a
checkpoint directory (default ``<output_dir>.ckpt/``):

    resume.pt         after every epoch: trainable weights, optimizer, scheduler, RNG states,
                      step/epoch counters, history, best epoch so far, elapsed time, config
    model.safetensors the final (best-epoch) weights of every parameter that differs from the
                      backbone: the trained encoder layers and the three heads
    checkpoint.json   backbone name, severity loss, max length, the parameter names, the bundle

``--init-from`` takes that directory, or a bundle directory whose ``bundle.json`` records it.
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.data import DataError

RESUME_FILE = "resume.pt"
WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "checkpoint.json"
#: config keys that may differ between an interrupted run and its resumption
RESUME_FREE = {"resume", "time_budget_s", "threads"}


def rng_state(rng: random.Random) -> dict[str, Any]:
    """Every random state the loop depends on (batch order, dropout, numpy)."""
    return {"batches": rng.getstate(), "python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def set_rng_state(rng: random.Random, state: dict[str, Any]) -> None:
    rng.setstate(state["batches"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_resume(ckpt: Path, state: dict[str, Any]) -> Path:
    """Write the per-epoch resume state atomically (an interrupted write leaves the old one)."""
    ckpt.mkdir(parents=True, exist_ok=True)
    tmp = ckpt / (RESUME_FILE + f".tmp-{os.getpid()}")
    torch.save(state, tmp)
    tmp.replace(ckpt / RESUME_FILE)
    return ckpt / RESUME_FILE


def load_resume(ckpt: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The saved resume state; DataError when there is none or it belongs to another config."""
    path = ckpt / RESUME_FILE
    if not path.is_file():
        raise DataError(f"--resume: no checkpoint at {path} (nothing to resume; run without --resume)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state.get("config", {})
    diff = sorted(k for k in set(saved) | set(config) if k not in RESUME_FREE and saved.get(k) != config.get(k))
    if diff:
        raise DataError(f"--resume: {path} was written with a different config ({', '.join(diff)}: "
                        + "; ".join(f"{k} was {saved.get(k)!r}, now {config.get(k)!r}" for k in diff[:3])
                        + "); use the same settings or start afresh without --resume")
    return state


def save_weights(ckpt: Path, model: torch.nn.Module, names: set[str], info: dict[str, Any]) -> Path:
    """Final weights (the parameters in ``names``) as safetensors plus checkpoint.json."""
    from safetensors.torch import save_file

    ckpt.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items() if k in names}
    save_file(state, str(ckpt / WEIGHTS_FILE))
    meta = {**info, "parameters": sorted(state), "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    (ckpt / INFO_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return ckpt


def resolve_init(path: str | Path) -> Path:
    """A checkpoint directory from ``--init-from`` (a checkpoint dir, or a bundle that records one)."""
    p = Path(path)
    if (p / INFO_FILE).is_file() and (p / WEIGHTS_FILE).is_file():
        return p
    meta_file = p / "bundle.json"
    if meta_file.is_file():
        recorded = json.loads(meta_file.read_text()).get("checkpoint") or ""
        if not recorded:
            raise DataError(f"--init-from {p}: this bundle records no training checkpoint (bundles made before "
                            "checkpoints were saved hold only ONNX); pass a checkpoint directory instead")
        ck = Path(recorded) if Path(recorded).is_absolute() else p / recorded
        if not (ck / WEIGHTS_FILE).is_file():
            raise DataError(f"--init-from {p}: its checkpoint {ck} is missing ({WEIGHTS_FILE} not found)")
        return ck.resolve()
    raise DataError(f"--init-from {p}: neither a checkpoint directory ({INFO_FILE} + {WEIGHTS_FILE}) nor a bundle")


def load_weights(ckpt: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and checkpoint.json of a checkpoint directory."""
    from safetensors.torch import load_file

    return load_file(str(ckpt / WEIGHTS_FILE)), json.loads((ckpt / INFO_FILE).read_text())


def apply_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Load warm-start weights; shapes must match (a CORN head cannot warm-start a softmax head)."""
    own = model.state_dict()
    unknown = sorted(set(state) - set(own))
    bad = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    if unknown or bad:
        raise DataError(f"--init-from {where}: checkpoint does not fit this model "
                        f"(unknown parameters {unknown[:3]}, shape mismatch {bad[:3]}); use the same backbone "
                        "and a severity loss with the same head shape")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)
