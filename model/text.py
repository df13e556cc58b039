"""The one text-preprocessing path.

Training, ONNX parity checks, the HTTP service and the batch scorer all turn text into
model inputs through :class:`TextEncoder`, so their inputs cannot drift apart (normalisation,
the e5 ``"query: "`` prefix, truncation length and padding id live here only).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

# C0/C1 control characters except tab/newline, plus lone surrogates that cannot be encoded.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_SPACES = re.compile(r"\s+")


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

    def __init__(self, tokenizer: Tokenizer, *, max_length: int, prefix: str, pad_id: int) -> None:
        if max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.prefix = prefix
        self.pad_id = pad_id
        tokenizer.no_truncation()
        tokenizer.no_padding()

    @classmethod
    def from_file(cls, path: str, *, max_length: int, prefix: str, pad_id: int) -> TextEncoder:
        """Load a ``tokenizer.json`` (Hugging Face fast-tokenizer format)."""
        return cls(Tokenizer.from_file(str(path)), max_length=max_length, prefix=prefix, pad_id=pad_id)

    def token_ids(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids per text (special tokens included), truncated to ``max_length``."""
        batch = self.tokenizer.encode_batch([self.prefix + normalize_text(t) for t in texts])
        ids: list[list[int]] = []
        truncated: list[bool] = []
        for enc in batch:
            row = enc.ids
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
