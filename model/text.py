"""The one text-preprocessing path.

Training, ONNX parity checks, the HTTP service and the batch scorer all turn text into
model inputs through :class:`TextEncoder`, so their inputs cannot drift apart (normalisation,
the e5 ``"query: "`` prefix, truncation length and padding id live here only).
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tokenizers import Tokenizer

# C0/C1 control characters except tab/newline, plus lone surrogates that cannot be encoded.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_SPACES = re.compile(r"\s+")
_LOG = logging.getLogger(__name__)
#: tokenizer backend: "auto" (sentencepiece when it can reproduce the tokenizer, else tokenizers),
#: "sentencepiece" (required) or "tokenizers"
TOKENIZER_ENV = "CT_TOKENIZER"


def normalize_text(text: str) -> str:
    """NFC-normalise, drop control and zero-width characters, collapse whitespace."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    text = _ZERO_WIDTH.sub("", text)
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class Encoded:
    """A padded batch of model inputs."""

    input_ids: np.ndarray  # int64 [batch, seq]
    attention_mask: np.ndarray  # int64 [batch, seq]
    truncated: np.ndarray  # bool [batch]


class TextEncoder:
    """Tokenise texts exactly as the model was trained."""

    def __init__(self, tokenizer: Any, *, max_length: int, prefix: str, pad_id: int) -> None:
        """``tokenizer``: a ``tokenizers.Tokenizer`` or a :class:`model.spm.SentencePieceBackend`."""
        if max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.prefix = prefix
        self.pad_id = pad_id
        self.backend = getattr(tokenizer, "name", "tokenizers")
        if isinstance(tokenizer, Tokenizer):
            tokenizer.no_truncation()
            tokenizer.no_padding()

    @classmethod
    def from_file(cls, path: str, *, max_length: int, prefix: str, pad_id: int,
                  backend: str | None = None) -> TextEncoder:
        """Load a ``tokenizer.json`` (Hugging Face fast-tokenizer format). ``backend`` (default: the
        ``CT_TOKENIZER`` variable, else "auto") picks who runs it, see :mod:`model.spm`."""
        backend = backend or os.environ.get(TOKENIZER_ENV, "auto")
        if backend not in ("auto", "sentencepiece", "tokenizers"):
            raise ValueError(f"{TOKENIZER_ENV}={backend!r}: expected auto, sentencepiece or tokenizers")
        if backend != "tokenizers":
            try:
                from model import spm
                from model.memory import release_free_memory

                tok = spm.load(Path(path))
                release_free_memory()  # the parsed JSON was ~40 MiB of short-lived objects
                return cls(tok, max_length=max_length, prefix=prefix, pad_id=pad_id)
            except (ImportError, ValueError, RuntimeError) as exc:
                if backend == "sentencepiece":
                    raise
                _LOG.info("tokenizer %s: served by tokenizers (%s)", path, exc)
        return cls(Tokenizer.from_file(str(path)), max_length=max_length, prefix=prefix, pad_id=pad_id)

    def token_ids(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids per text (special tokens included), truncated to ``max_length``."""
        strings = [self.prefix + normalize_text(t) for t in texts]
        if isinstance(self.tokenizer, Tokenizer):
            rows = [enc.ids for enc in self.tokenizer.encode_batch(strings)]
        else:
            rows = self.tokenizer.encode_ids(strings)
        ids: list[list[int]] = []
        truncated: list[bool] = []
        for row in rows:
            if len(row) > self.max_length:
                # keep the head of the text and the closing special token
                row = row[: self.max_length - 1] + row[-1:]
                truncated.append(True)
            else:
                truncated.append(False)
            ids.append(row)
        return ids, truncated

    def pad(self, ids: Sequence[Sequence[int]], truncated: Sequence[bool]) -> Encoded:
        """Right-pad a list of id rows to the longest one."""
        width = max((len(r) for r in ids), default=1)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return Encoded(input_ids, mask, np.asarray(truncated, dtype=bool))

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Tokenise and pad a batch of texts."""
        ids, truncated = self.token_ids(texts)
        return self.pad(ids, truncated)
