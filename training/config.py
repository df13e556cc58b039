"""Typed, frozen training configuration with working defaults.

Every field can be overridden on the command line (``--epochs 2``, ``--freeze-embeddings false``);
the resolved config is saved into the bundle next to the model it produced.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ColumnMap:
    """Where each field lives in the input file (for data in another schema)."""

    text: str = "text"
    severity: str = "severity"
    private_followup: str = "private_followup"
    sentiment: str = "sentiment"
    lang: str = "lang"
    id: str = "id"
    #: coarse binary label (complaint yes/no): trains the severity head through P(severity != none)
    complaint: str = "is_complaint"


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning hyper-parameters and inputs. Defaults build the shipped bundle."""

    data: tuple[str, ...] = ("data/corpus",)
    #: evaluation-only hard cases; skipped when the path does not exist
    challenge: str = "data/challenge"
    #: field set written by people who never saw the corpus: evaluation only, never selection
    field_set: str = "data/field"
    backbone: str = "multilingual-e5-small"
    output_dir: str = "artifacts/bundle"
    name: str = "complaint-triage"
    version: str = "1.1.0"
    max_length: int = 128
    batch_size: int = 32
    epochs: int = 3
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    dropout: float = 0.1
    freeze_embeddings: bool = True
    #: freeze the embeddings and the lowest N encoder layers (backward stops above them)
    freeze_layers: int = 4
    #: severity head: "softmax" (plain cross-entropy), "soft" (neighbour-smoothed targets) or
    #: "corn" (conditional ordinal logits)
    severity_loss: str = "soft"
    #: bf16 autocast for the encoder's forward/backward on CPU (only where the CPU has avx512_bf16 or AMX)
    bf16: bool = True
    #: fit a temperature per head and the complaint threshold on the validation split
    calibrate: bool = True
    #: expected share of complaints where the model will be deployed (0 = as in training);
    #: stored in the bundle and applied to P(severity) by Bayes' rule at scoring time
    complaint_prior: float = 0.0
    patience: int = 1
    seed: int = 13
    #: stop training (keeping the best epoch) once this many seconds have passed
    time_budget_s: float = 780.0
    #: use at most this many training rows (0 = all); for smoke tests
    max_train_rows: int = 0
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    quantize: bool = True
    min_int8_agreement: float = 0.995
    max_int8_f1_drop: float = 0.01
    threads: int = 0
    #: conversion gate (training.convert): exact embedding rows kept by the vocabulary trim (0 = no trim)
    vocab_trim: int = 30000
    #: scripts whose pieces the trim serves (Unicode script names; digits/punctuation/emoji always)
    vocab_scripts: tuple[str, ...] = ("LATIN",)
    #: store the served-script pieces the trim drops as per-row int8 instead of sending them to <unk>
    vocab_tail_int8: bool = True
    #: with the trim, replace the tokenizer pieces of other scripts by placeholders (same ids)
    trim_tokenizer: bool = True
    optimize_graph: bool = True
    fuse_attention: bool = True
    fp16_weights: bool = True
    min_conversion_agreement: float = 0.995
    #: also keep the unconverted fp32 bundle of the same weights at <output_dir>.fp32 (speed comparisons)
    keep_fp32: bool = False
    #: map the data's label values to ours, one spec per head: "severity=0:none,1:low,…"
    label_map: tuple[str, ...] = ()
    #: also train on the default corpus, so every head is trained even if the data lacks its labels
    with_default_corpus: bool = False
    default_corpus: str = "data/corpus"
    #: loss weight of the user's rows when mixed with the default corpus
    user_weight: float = 1.0
    #: warm start: a training checkpoint directory, or a bundle whose bundle.json points at one
    init_from: str = ""
    #: where per-epoch and final torch checkpoints go ("" = <output_dir>.ckpt)
    checkpoint_dir: str = ""
    #: continue an interrupted run from its last per-epoch checkpoint
    resume: bool = False
    #: distillation (training.distill): encoder layers the student keeps, as a count ("6") or indices
    #: ("0,2,4,7,9,11"); "" = no student, the fine-tuned model ships
    student_layers: str = ""
    #: distil from this training checkpoint instead of fine-tuning a teacher first
    teacher: str = ""
    #: unlabeled text (files or directories) the student also learns from, on the teacher's soft
    #: labels only; "" = the training split alone
    student_unlabeled: str = "data/unlabeled"
    student_epochs: int = 3
    student_learning_rate: float = 8e-5
    student_time_budget_s: float = 1000.0
    student_freeze_layers: int = 0
    #: quantisation-aware student (training.qat): trained under the per-token int8 rounding it is
    #: served with and shipped as int8; keeps every layer unless --student-layers says otherwise
    student_qat: bool = False
    distill_temperature: float = 2.0
    distill_alpha: float = 0.7
    distill_beta: float = 1.0
    #: student gate: the student ships only if no head loses more macro-F1 than this on any set
    max_student_f1_drop: float = 0.01
    columns: ColumnMap = field(default_factory=ColumnMap)

    def __post_init__(self) -> None:
        checks = {
            "max_length": 8 <= self.max_length <= 512,
            "batch_size": self.batch_size >= 1,
            "epochs": self.epochs >= 1,
            "learning_rate": self.learning_rate > 0,
            "head_learning_rate": self.head_learning_rate > 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "dropout": 0 <= self.dropout < 1,
            "patience": self.patience >= 0,
            "time_budget_s": self.time_budget_s > 0,
            "max_train_rows": self.max_train_rows >= 0,
            "min_int8_agreement": 0 < self.min_int8_agreement <= 1,
            "vocab_trim": self.vocab_trim == 0 or self.vocab_trim >= 1000,
            "min_conversion_agreement": 0 < self.min_conversion_agreement <= 1,
            "freeze_layers": 0 <= self.freeze_layers <= 48,
            "severity_loss": self.severity_loss in ("softmax", "soft", "corn"),
            "complaint_prior": 0 <= self.complaint_prior < 1,
            "user_weight": self.user_weight > 0,
            "student_epochs": self.student_epochs >= 1,
            "student_learning_rate": self.student_learning_rate > 0,
            "student_time_budget_s": self.student_time_budget_s > 0,
            "student_freeze_layers": self.student_freeze_layers >= 0,
            "distill_temperature": self.distill_temperature > 0,
            "distill_alpha": 0 <= self.distill_alpha <= 1,
            "distill_beta": self.distill_beta >= 0,
            "max_student_f1_drop": 0 <= self.max_student_f1_drop <= 1,
            "loss_weights": len(self.loss_weights) == 3 and all(w >= 0 for w in self.loss_weights),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training config values: {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")
        if not self.data:
            raise ValueError("at least one data path is required")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    @property
    def ckpt(self) -> Path:
        """The checkpoint directory (per-epoch resume state and the final torch weights)."""
        return Path(self.checkpoint_dir) if self.checkpoint_dir else self.out.with_name(self.out.name + ".ckpt")


#: help text of every TrainConfig field (``train --help`` adds the default); a test checks completeness
HELP: dict[str, str] = {
    "data": "labeled data files or directories (JSONL, CSV, Parquet)",
    "challenge": "evaluation-only hard cases (skipped when the path does not exist)",
    "field_set": "evaluation-only field set, never trained on or used for selection (skipped when absent)",
    "backbone": "encoder: multilingual-e5-small, all-MiniLM-L6-v2 or a local Hugging Face directory",
    "output_dir": "where the bundle is written (atomically, when complete)",
    "name": "model name recorded in the bundle",
    "version": "model version recorded in the bundle",
    "max_length": "tokens per text (longer texts are truncated and flagged)",
    "batch_size": "training batch size",
    "epochs": "maximum number of epochs",
    "learning_rate": "encoder learning rate (AdamW)",
    "head_learning_rate": "learning rate of the three heads",
    "weight_decay": "AdamW weight decay",
    "warmup_ratio": "share of steps with linear warm-up",
    "dropout": "dropout before the heads",
    "freeze_embeddings": "freeze the word-embedding matrix (most of the parameters)",
    "freeze_layers": "also freeze the embeddings block and the lowest N encoder layers (faster backward)",
    "severity_loss": "severity head: softmax, soft (neighbour-smoothed ordinal targets) or corn",
    "bf16": "bf16 autocast on CPU for the forward/backward pass, where the CPU has bf16 natively "
            "(avx512_bf16 or AMX); elsewhere training runs in fp32, which is faster there, and says so",
    "calibrate": "fit a temperature per head and the complaint/follow-up thresholds on validation",
    "complaint_prior": "deployment complaint rate applied by Bayes' rule at scoring (0 = none)",
    "patience": "epochs without validation improvement before early stopping",
    "seed": "random seed (shuffling, initialisation)",
    "time_budget_s": "stop training after this many seconds, keeping the best epoch",
    "max_train_rows": "use at most this many training rows (0 = all; for smoke tests)",
    "loss_weights": "weights of the severity, follow-up and sentiment losses",
    "quantize": "try int8 and keep it only if it passes the agreement/F1 gate",
    "min_int8_agreement": "int8 gate: minimum decision agreement with fp32",
    "max_int8_f1_drop": "int8 gate: maximum macro-F1 drop on any head",
    "threads": "torch threads (0 = all cores)",
    "vocab_trim": "conversion: exact embedding rows kept by the vocabulary trim (0 = no trim; min 1000)",
    "vocab_scripts": "conversion: Unicode scripts the trimmed vocabulary serves (digits, punctuation, emoji always)",
    "vocab_tail_int8": "conversion: keep the dropped pieces of those scripts as per-row int8 rows instead of <unk>",
    "trim_tokenizer": "conversion: with the trim, blank the tokenizer pieces of other scripts (same ids; "
                      "served-script texts tokenise exactly as before; less memory)",
    "optimize_graph": "conversion: ORT transformer optimizer (SkipLayerNorm, BiasGelu fusions; exact GELU)",
    "fuse_attention": "conversion: each self-attention as one MultiHeadAttention node (fp32 and int8 graphs; "
                      "the export's attention is not matched by ORT's optimizer)",
    "fp16_weights": "conversion: store large weights as float16 (fp32 compute; ORT casts them once at load)",
    "keep_fp32": "also keep the unconverted fp32 bundle of the same weights at <output-dir>.fp32 "
                 "(for tools.bench --fp32-model; about 470 MB)",
    "min_conversion_agreement": "conversion gate: minimum decision agreement with fp32 per head and set",
    "label_map": "map your label values to ours, one spec per head, e.g. severity=0:none,1:low,2:medium,"
                 "3:high,4:critical sentiment=neg:negative,neu:neutral,pos:positive "
                 "(research-scale severity names are understood without a map), or a TOML file "
                 "with one table per head (labels.toml)",
    "with_default_corpus": "also train on the default corpus so every head is trained (your rows weighted "
                           "by --user-weight); without it a head your data lacks is untrained and served as null",
    "default_corpus": "the default corpus used by --with-default-corpus",
    "user_weight": "loss weight of your rows relative to default-corpus rows (with --with-default-corpus)",
    "init_from": "warm start from a training checkpoint directory or a bundle that records one "
                 "(empty = the bare backbone)",
    "checkpoint_dir": "per-epoch resume state and final torch weights (empty = <output-dir>.ckpt)",
    "student_layers": "distil a shallower student from the fine-tuned model: how many encoder layers it keeps "
                      "(\"6\", evenly spread, first and last included) or which (\"0,2,4,7,9,11\"); "
                      "empty = no student",
    "teacher": "use this training checkpoint (or a bundle recording one) as the fine-tuned model instead "
               "of training: with --student-layers it is the teacher; without, the checkpoint is only "
               "exported, converted and evaluated into a bundle",
    "student_unlabeled": "student: unlabeled text files or directories (comma-separated; a text column, "
                         "labels ignored) it also learns from on the teacher's soft labels; rows that "
                         "duplicate a validation, test, challenge or field text are dropped; \"\" = none",
    "student_epochs": "student: maximum number of epochs",
    "student_learning_rate": "student: encoder learning rate",
    "student_time_budget_s": "student: stop training after this many seconds, keeping the best epoch",
    "student_freeze_layers": "student: freeze its lowest N layers (faster backward)",
    "student_qat": "student: quantisation-aware, trained under the per-token int8 rounding it is served with "
                   "and shipped as int8 (all layers unless --student-layers is given); the student gate applies",
    "distill_temperature": "student: softmax temperature of the teacher's soft labels",
    "distill_alpha": "student: weight of the teacher's soft labels against the gold labels (0-1)",
    "distill_beta": "student: weight of matching the teacher's sentence vector (MSE)",
    "max_student_f1_drop": "student gate: largest macro-F1 loss against the teacher allowed on any head and set",
    "resume": "continue an interrupted run from the last per-epoch checkpoint (same config required)",
}


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per TrainConfig / ColumnMap field (defaults left unset)."""
    for f in dataclasses.fields(TrainConfig):
        if f.name == "columns":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        shown = (" ".join(map(str, default)) or "none") if isinstance(default, tuple) else default
        text = f"{HELP[f.name]} (default: {shown})"
        if isinstance(default, bool):
            parser.add_argument(flag, type=_parse_bool, default=None, metavar="BOOL", help=text)
        elif isinstance(default, tuple):
            kind = type(default[0]) if default else str
            parser.add_argument(flag, type=kind, nargs="+", default=None, help=text)
        else:
            parser.add_argument(flag, type=type(default), default=None, help=text)
    for f in dataclasses.fields(ColumnMap):
        parser.add_argument(f"--{f.name.replace('_', '-')}-col", dest=f"col_{f.name}", default=None,
                            help=f"input column holding {f.name} (default {f.default!r})")
    parser.add_argument("--config", default=None, metavar="TOML",
                        help="read settings from a TOML file (keys = these flags' names, a [columns] table "
                             "for the *-col flags); flags given on the command line win (default: none)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate data and label maps, print counts per label, dropped rows and the "
                             "heads that will train, then exit 0 (or 2 on a problem) without training "
                             "(default: off)")


def _check_type(name: str, value: Any, default: Any, where: str) -> Any:
    """A config-file value converted to the field's type, or ValueError naming the key."""
    if isinstance(default, tuple):
        items = value if isinstance(value, list) else [value]
        kind = type(default[0]) if default else str
        out = [_check_type(name, v, kind(), where) for v in items]
        return None if any(o is None for o in out) else tuple(out)
    if isinstance(default, bool):
        return value if isinstance(value, bool) else None
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value if isinstance(value, type(default)) and not isinstance(value, bool) else None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``train.toml``: top-level keys are TrainConfig fields (``epochs = 2`` or ``max-length``),
    a ``[columns]`` table the column map. Unknown keys and wrong types raise ValueError."""
    from training.labelmap import read_toml

    path = Path(path)
    raw = read_toml(path, "config file")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name != "columns"}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name == "columns" and isinstance(value, dict):
            known = {f.name for f in dataclasses.fields(ColumnMap)}
            bad = sorted(set(k.replace("-", "_") for k in value) - known)
            if bad:
                raise ValueError(f"config file {path}: unknown column key(s) {', '.join(bad)} "
                                 f"(known: {', '.join(sorted(known))})")
            if not all(isinstance(v, str) and v for v in value.values()):
                raise ValueError(f"config file {path}: [columns] values must be column names (strings)")
            values["columns"] = {k.replace("-", "_"): v for k, v in value.items()}
            continue
        if name not in fields:
            raise ValueError(f"config file {path}: unknown key {key!r} (known: {', '.join(sorted(fields))}, "
                             "and a [columns] table)")
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        checked = _check_type(name, value, default, str(path))
        if checked is None:
            raise ValueError(f"config file {path}: {key} = {value!r} has the wrong type "
                             f"(expected {type(default).__name__}, like the default {default!r})")
        values[name] = checked
    return values


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build a TrainConfig: defaults, then ``--config FILE`` values, then the flags given."""
    values: dict[str, Any] = {}
    cols: dict[str, str] = {}
    if getattr(args, "config", None):
        values = load_config_file(args.config)
        cols = values.pop("columns", {})
    for f in dataclasses.fields(TrainConfig):
        val = getattr(args, f.name, None)
        if val is not None and f.name != "columns":
            values[f.name] = tuple(val) if isinstance(val, list) else val
    cols.update({f.name: getattr(args, f"col_{f.name}") for f in dataclasses.fields(ColumnMap)
                 if getattr(args, f"col_{f.name}", None)})
    return TrainConfig(columns=ColumnMap(**cols), **values)
