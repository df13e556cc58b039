"""Scorer: load a bundle and turn texts into head probabilities with ONNX Runtime.

This is the one inference path. The HTTP service, the batch CLI, the Ray actor and the
evaluation code all call :meth:`Scorer.predict`, so their outputs cannot drift.
Imports only onnxruntime, sentencepiece, tokenizers and numpy: never torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from model.bundle import MODEL_FILE, TOKENIZER_FILE, BundleError, BundleMeta, read_meta, verify_files
from model.decisions import check_complaint_prior, shift_complaint_prior
from model.labels import ONNX_OUTPUTS, SENTIMENT_LABELS, SEVERITY_LABELS
from model.text import TextEncoder


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stable, exactly normalised probabilities."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def length_chunks(order: np.ndarray, lengths: Sequence[int], max_rows: int,
                  max_padding: float = 1.25) -> list[np.ndarray]:
    """Split length-sorted row indices into model batches of at most ``max_rows`` rows whose
    padded size stays within ``max_padding`` × their real token count.

    A fixed batch size would pad a batch of short tweets to the length of the one long e-mail
    that happens to share it (up to 3× the work at 128 tokens); this bound keeps short texts in
    large batches and long ones in small batches.
    """
    chunks: list[np.ndarray] = []
    start, real = 0, 0
    for pos, row in enumerate(order):
        ln = lengths[row]
        rows = pos - start + 1
        if rows > 1 and (rows > max_rows or ln * rows > max_padding * (real + ln)):
            chunks.append(order[start:pos])
            start, real, rows = pos, 0, 1
        real += ln
    if len(order) > start:
        chunks.append(order[start:])
    return chunks


@dataclass(frozen=True)
class Predictions:
    """Head probabilities for a batch of texts, rows in input order."""

    severity: np.ndarray  # [n, 5] softmax over SEVERITY_LABELS
    followup: np.ndarray  # [n] sigmoid probability of private follow-up
    sentiment: np.ndarray  # [n, 3] softmax over SENTIMENT_LABELS
    truncated: np.ndarray  # [n] bool: text was longer than the model window

    def __len__(self) -> int:
        return int(self.followup.shape[0])


class Scorer:
    """A loaded bundle: tokenizer + ONNX session + metadata."""

    def __init__(self, bundle_dir: Path, meta: BundleMeta, session: ort.InferenceSession,
                 encoder: TextEncoder, batch_size: int, complaint_prior: float | None = None) -> None:
        self.bundle_dir = bundle_dir
        self.meta = meta
        self.session = session
        self.encoder = encoder
        self.batch_size = batch_size
        # a serving override wins over the prior chosen at train time; 0 / None = no correction
        self.complaint_prior = complaint_prior if complaint_prior is not None else (meta.complaint_prior or None)
        temps = meta.temperatures
        self._temps = (float(temps.get("severity", 1.0)), float(temps.get("private_followup", 1.0)),
                       float(temps.get("sentiment", 1.0)))
        if self.complaint_prior is not None:  # fail at load, not on the first request
            check_complaint_prior(meta.complaint_rate, self.complaint_prior)

    @classmethod
    def load(cls, bundle_dir: str | Path, *, intra_op_threads: int = 0, inter_op_threads: int = 1,
             batch_size: int = 32, verify: bool = True, spin: bool = True,
             complaint_prior: float | None = None, mem_arena: bool = True) -> Scorer:
        """Load and check a bundle; raises :class:`BundleError` with a clear reason.

        ``mem_arena=False`` turns off ORT's CPU memory arena: activations are freed after each run
        instead of kept at their peak size (lower resident memory, slightly more allocation).
        """
        bundle_dir = Path(bundle_dir)
        meta = read_meta(bundle_dir)
        if verify:
            verify_files(bundle_dir, meta)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.enable_cpu_mem_arena = mem_arena
        if not spin:
            # ORT's worker threads busy-wait between ops by default; in a server that shares the
            # cores with the event loop that steals CPU from request handling
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(bundle_dir / MODEL_FILE), opts,
                                           providers=["CPUExecutionProvider"])
            encoder = TextEncoder.from_file(str(bundle_dir / TOKENIZER_FILE), max_length=meta.max_length,
                                            prefix=meta.prefix, pad_id=meta.pad_id)
        except Exception as exc:  # ORT raises its own exception types for broken graphs
            raise BundleError(f"bundle {bundle_dir}: cannot load model or tokenizer: {exc}") from exc
        scorer = cls(bundle_dir, meta, session, encoder, batch_size, complaint_prior)
        scorer._check_signature()
        return scorer

    def _check_signature(self) -> None:
        """Refuse a model whose inputs/outputs do not match the label scheme."""
        inputs = {i.name for i in self.session.get_inputs()}
        if inputs != {"input_ids", "attention_mask"}:
            raise BundleError(f"bundle {self.bundle_dir}: model inputs {sorted(inputs)} are not "
                              "['attention_mask', 'input_ids']")
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs != list(ONNX_OUTPUTS):
            raise BundleError(f"bundle {self.bundle_dir}: model outputs {outputs} != {list(ONNX_OUTPUTS)}")
        probe = self._run_padded(["warm-up"] * 2)
        widths = (probe[0].shape[1], probe[1].shape[1], probe[2].shape[1])
        if widths != (len(SEVERITY_LABELS), 1, len(SENTIMENT_LABELS)):
            raise BundleError(f"bundle {self.bundle_dir}: model output widths {widths} do not match "
                              f"labels ({len(SEVERITY_LABELS)}, 1, {len(SENTIMENT_LABELS)})")
        vocab = self.encoder.tokenizer.get_vocab_size()
        embed_rows = self.meta.training_config.get("vocab_size")
        if embed_rows and vocab > int(embed_rows):
            raise BundleError(f"bundle {self.bundle_dir}: tokenizer has {vocab} tokens but the model "
                              f"embeds only {embed_rows}: wrong tokenizer")

    def _run_padded(self, texts: Sequence[str]) -> list[np.ndarray]:
        enc = self.encoder.encode(texts)
        return self.session.run(list(ONNX_OUTPUTS), {"input_ids": enc.input_ids,
                                                      "attention_mask": enc.attention_mask})

    def logits(self, texts: Sequence[str], batch_size: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Raw head logits (severity [n, 5], follow-up [n], sentiment [n, 3]) and the truncation
        flags, rows in input order; batches are formed by token length to minimise padding."""
        n = len(texts)
        size = batch_size or self.batch_size
        ids, truncated = self.encoder.token_ids(texts)
        lengths = [len(r) for r in ids]
        order = np.argsort(lengths, kind="stable")
        sev = np.zeros((n, len(SEVERITY_LABELS)))
        fol = np.zeros(n)
        sen = np.zeros((n, len(SENTIMENT_LABELS)))
        for idx in length_chunks(order, lengths, size):
            enc = self.encoder.pad([ids[i] for i in idx], [truncated[i] for i in idx])
            s, f, t = self.session.run(list(ONNX_OUTPUTS), {"input_ids": enc.input_ids,
                                                             "attention_mask": enc.attention_mask})
            sev[idx], fol[idx], sen[idx] = s, f[:, 0], t
        return sev, fol, sen, np.asarray(truncated, dtype=bool)

    def predict(self, texts: Sequence[str], batch_size: int | None = None) -> Predictions:
        """Score texts: calibrated probabilities per head (temperatures from the bundle, then the
        optional complaint-prior correction)."""
        s, f, t, truncated = self.logits(texts, batch_size)
        return self._calibrate(s, f, t, truncated)

    def predict_ids(self, ids: Sequence[Sequence[int]], truncated: Sequence[bool]) -> Predictions:
        """Score ONE model batch of token ids (rows as ``encoder.token_ids`` returns them), as
        :meth:`predict` would: the service tokenises on request threads and its model thread
        runs only this, on batches it has already grouped by length."""
        enc = self.encoder.pad(ids, truncated)
        s, f, t = self.session.run(list(ONNX_OUTPUTS), {"input_ids": enc.input_ids,
                                                         "attention_mask": enc.attention_mask})
        return self._calibrate(s, f[:, 0], t, enc.truncated)

    def _calibrate(self, s: np.ndarray, f: np.ndarray, t: np.ndarray, truncated: np.ndarray) -> Predictions:
        t_sev, t_fol, t_sen = self._temps  # temperature scaling fitted on validation
        sev = softmax(s / t_sev)
        if self.complaint_prior is not None:
            sev = shift_complaint_prior(sev, self.meta.complaint_rate, self.complaint_prior)
        return Predictions(sev, sigmoid(f / t_fol), softmax(t / t_sen), truncated)
