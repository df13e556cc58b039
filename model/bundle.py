"""Bundle directory: write and read the self-describing model artefact.

A bundle is one directory holding everything inference needs and nothing of torch::

    model.onnx        the network (int8 or fp32, see metadata "quantization")
    tokenizer.json    the fast tokenizer it was trained with
    bundle.json       labels, thresholds, max length, prefix, backbone, data hash, config,
                      metrics, version, creation time
    MODEL_CARD.md     human-readable summary
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from model.labels import labels_dict

BUNDLE_FORMAT = 1
META_FILE = "bundle.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"


class BundleError(RuntimeError):
    """The bundle is missing, incomplete or inconsistent; the message says what."""


@dataclass(frozen=True)
class BundleMeta:
    """Everything inference needs to know about a model, stored as ``bundle.json``."""

    name: str
    version: str
    backbone: str
    max_length: int
    prefix: str
    pad_id: int
    labels: dict[str, list[str]]
    followup_threshold: float = 0.5
    #: is_complaint = P(severity != none) >= this; calibrated on validation (one threshold for
    #: is_complaint, the severity decision and the priority gate)
    complaint_threshold: float = 0.5
    #: temperature per head ("severity", "private_followup", "sentiment"), fitted on validation;
    #: logits are divided by it before softmax/sigmoid (1.0 = uncalibrated)
    temperatures: dict[str, float] = field(default_factory=dict)
    #: share of complaints (severity != none) in the training data: the prior that a deployment
    #: with a different complaint rate corrects for (see model.decisions.shift_complaint_prior)
    complaint_rate: float = 0.0
    #: deployment complaint rate chosen at train time (0 = none): the scorer applies the prior
    #: correction by default; a serving setting may override it
    complaint_prior: float = 0.0
    quantization: str = "none"
    created_at: str = ""
    data_hash: str = ""
    format: int = BUNDLE_FORMAT
    training_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    #: sha256 of model.onnx and tokenizer.json, checked at load (catches truncation, swaps)
    files: dict[str, str] = field(default_factory=dict)
    #: heads the training data had no labels for → why; the service returns their outputs as null
    #: ("severity", "private_followup", "sentiment", or "severity_levels" when only binary
    #: complaint labels trained the severity head)
    untrained_heads: dict[str, str] = field(default_factory=dict)
    #: the torch training checkpoint (relative to the bundle directory) for --init-from
    checkpoint: str = ""

    def __post_init__(self) -> None:
        if not 0.0 < self.followup_threshold < 1.0:
            raise BundleError(f"followup_threshold must be in (0, 1), got {self.followup_threshold}")
        if not 0.0 < self.complaint_threshold < 1.0:
            raise BundleError(f"complaint_threshold must be in (0, 1), got {self.complaint_threshold}")
        if not 0.0 <= self.complaint_prior < 1.0:
            raise BundleError(f"complaint_prior must be in [0, 1), got {self.complaint_prior}")
        if not 0.0 <= self.complaint_rate < 1.0:
            raise BundleError(f"complaint_rate must be in [0, 1), got {self.complaint_rate}")
        bad = {k: v for k, v in self.temperatures.items()
               if k not in ("severity", "private_followup", "sentiment") or not 0.05 <= float(v) <= 20.0}
        if bad:
            raise BundleError(f"temperatures must be per head and in [0.05, 20], got {bad}")
        unknown = set(self.untrained_heads) - {"severity", "severity_levels", "private_followup", "sentiment"}
        if unknown:
            raise BundleError(f"untrained_heads names unknown heads {sorted(unknown)}")
        if self.max_length < 8:
            raise BundleError(f"max_length must be >= 8, got {self.max_length}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False, sort_keys=False)


def write_meta(bundle_dir: Path, meta: BundleMeta) -> None:
    """Write ``bundle.json`` atomically."""
    bundle_dir.mkdir(parents=True, exist_ok=True)
    tmp = bundle_dir / (META_FILE + ".tmp")
    tmp.write_text(meta.to_json() + "\n", encoding="utf-8")
    tmp.replace(bundle_dir / META_FILE)


def read_meta(bundle_dir: Path) -> BundleMeta:
    """Read and validate ``bundle.json``; raises :class:`BundleError` with a clear reason."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle directory not found: {bundle_dir} (build one with `make model`)")
    for name in (META_FILE, MODEL_FILE, TOKENIZER_FILE):
        if not (bundle_dir / name).is_file():
            raise BundleError(f"bundle {bundle_dir} is incomplete: {name} is missing")
    try:
        raw = json.loads((bundle_dir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"bundle {bundle_dir}: {META_FILE} is unreadable: {exc}") from exc
    if not isinstance(raw, dict):
        raise BundleError(f"bundle {bundle_dir}: {META_FILE} must hold a JSON object")
    if raw.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"bundle {bundle_dir}: format {raw.get('format')!r} unsupported, expected {BUNDLE_FORMAT}")
    known = set(BundleMeta.__dataclass_fields__)
    try:
        meta = BundleMeta(**{k: v for k, v in raw.items() if k in known})
    except TypeError as exc:
        raise BundleError(f"bundle {bundle_dir}: {META_FILE} lacks a field: {exc}") from exc
    if meta.labels != labels_dict():
        raise BundleError(
            f"bundle {bundle_dir}: labels {meta.labels} do not match this code's label scheme {labels_dict()}"
        )
    return meta


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(bundle_dir: Path, meta: BundleMeta) -> None:
    """Check that model.onnx and tokenizer.json are the files the bundle was built with."""
    for name in (MODEL_FILE, TOKENIZER_FILE):
        expected = meta.files.get(name)
        if not expected:
            raise BundleError(f"bundle {bundle_dir}: {META_FILE} has no checksum for {name}")
        actual = file_sha256(Path(bundle_dir) / name)
        if actual != expected:
            raise BundleError(
                f"bundle {bundle_dir}: {name} does not match its recorded checksum "
                f"(truncated or replaced file; rebuild the bundle)"
            )
