"""Serve a Unigram ``tokenizer.json`` with sentencepiece's C++ tokenizer.

The e5/XLM-R tokenizer is a sentencepiece Unigram model that Hugging Face ``tokenizers`` loads into
a per-character hash-map trie: 121 MiB resident for the trimmed 250k-piece vocabulary, a third of a
serving process. The same pieces, scores and normaliser (the precompiled NFKC character map) in a
sentencepiece ``ModelProto`` take 35 MiB (a double-array trie) and tokenise ~3.5× faster. The proto is
built in memory from ``tokenizer.json`` at load, so bundles do not change.

Only tokenizers this module can reproduce are converted (:func:`convertible` says why not):
Unigram without byte fallback; normaliser ``Precompiled`` (optionally followed by the ``" {2,}"`` →
``" "`` replace); ``Metaspace`` pre-tokeniser that always adds the ``▁`` prefix; a post-processor
that wraps a text as ``<s> … </s>``. Placeholder pieces (the vocabulary trim's NUL pieces) become
sentencepiece ``UNUSED`` pieces: same ids, never produced. Measured on the 26,685 texts of
``data/`` with the trimmed and the untrimmed e5 tokenizer: 26,684 give the same ids as
``tokenizers``. The one that differs is a tie between two segmentations of equal score ("…mmm" as
m+mm or mm+m). Known difference by design: ``<s>``, ``</s>``, ``<mask>`` typed inside a message are plain text here; the
Hugging Face tokenizer turns them into control tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

#: up to this many texts are encoded one call each: sentencepiece's list API starts a thread pool
#: per call, which cost 202 µs for a one-text list against 16 µs for the string (0.2.3, a tweet-like
#: sample of 1,000 corpus texts) and, in the service, took a third of the event loop's busy samples
#: under load (py-spy); for big lists the pool pays off (9 µs per text against 16)
SMALL_BATCH = 8


class SentencePieceBackend:
    """``tokenizers``-like surface the encoder needs: ``encode_ids``, ``get_vocab_size``."""

    name = "sentencepiece"

    def __init__(self, processor: Any, bos_id: int, eos_id: int, vocab_size: int) -> None:
        self.processor = processor
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.vocab_size = vocab_size

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        if len(texts) <= SMALL_BATCH:  # a request's few messages: one call per text
            rows = [self.processor.encode(t, out_type=int) for t in texts]
        else:
            rows = self.processor.encode(list(texts), out_type=int)
        return [[self.bos_id, *row, self.eos_id] for row in rows]

    def get_vocab_size(self) -> int:
        return self.vocab_size


def _normalizer_steps(data: dict[str, Any]) -> list[dict[str, Any]]:
    norm = data.get("normalizer") or {}
    return list(norm.get("normalizers", [])) if norm.get("type") == "Sequence" else [norm]


def convertible(data: dict[str, Any]) -> str | None:
    """None when ``data`` (a parsed ``tokenizer.json``) can be served by sentencepiece, else why not."""
    model = data.get("model") or {}
    if model.get("type") != "Unigram" or model.get("byte_fallback"):
        return f"model {model.get('type')} (byte_fallback {model.get('byte_fallback')}) is not a plain Unigram"
    steps = _normalizer_steps(data)
    if not steps or steps[0].get("type") != "Precompiled" or not steps[0].get("precompiled_charsmap"):
        return "normalizer is not Precompiled"
    for extra in steps[1:]:
        if extra != {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}:
            return f"normalizer step {extra.get('type')} is not reproduced"
    pre = data.get("pre_tokenizer") or {}
    if pre.get("type") != "Metaspace" or pre.get("replacement") != "▁" or pre.get("split") is False \
            or not (pre.get("add_prefix_space") is True or pre.get("prepend_scheme") == "always"):
        return "pre-tokenizer is not Metaspace(▁, always prefixed)"
    if _wrap_ids(data) is None:
        return "post-processor does not wrap a text as <s> … </s>"
    return None


def _wrap_ids(data: dict[str, Any]) -> tuple[int, int] | None:
    post = data.get("post_processor") or {}
    if post.get("type") == "RobertaProcessing":
        return int(post["cls"][1]), int(post["sep"][1])
    if post.get("type") == "TemplateProcessing":
        single = post.get("single", [])
        specials = post.get("special_tokens", {})
        if len(single) == 3 and "SpecialToken" in single[0] and "Sequence" in single[1] \
                and "SpecialToken" in single[2]:
            first, last = (specials.get(single[i]["SpecialToken"]["id"], {}).get("ids", []) for i in (0, 2))
            if len(first) == 1 and len(last) == 1:
                return int(first[0]), int(last[0])
    return None


def model_proto(data: dict[str, Any]) -> bytes:
    """A serialised sentencepiece ``ModelProto`` with the same ids as ``data``'s vocabulary."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    kind = pb.ModelProto.SentencePiece
    special = {str(t["content"]) for t in data.get("added_tokens", [])}
    unk_id = int(data["model"].get("unk_id") or 0)
    seen: set[str] = set()
    for i, (piece, score) in enumerate(data["model"]["vocab"]):
        sp = proto.pieces.add()
        if i == unk_id:
            sp.piece, sp.type, sp.score = piece, kind.UNKNOWN, 0.0
        elif piece in special:
            sp.piece, sp.type, sp.score = piece, kind.CONTROL, 0.0
        elif piece == "\u0000" or piece in seen:  # the trim's placeholders: keep the id, never match
            sp.piece, sp.type, sp.score = f"<unused-{i}>", kind.UNUSED, 0.0
        else:
            sp.piece, sp.type, sp.score = piece, kind.NORMAL, float(score)
        seen.add(piece)
    spec = proto.trainer_spec
    spec.model_type = pb.TrainerSpec.UNIGRAM
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = unk_id, -1, -1, -1
    norm = proto.normalizer_spec
    norm.name = "precompiled"
    norm.precompiled_charsmap = base64.b64decode(_normalizer_steps(data)[0]["precompiled_charsmap"])
    # TextEncoder's normalize_text already collapses and strips whitespace; keeping sentencepiece's
    # own whitespace handling off makes "query: " + "" end in "▁" as the Hugging Face tokenizer does
    norm.add_dummy_prefix, norm.remove_extra_whitespaces, norm.escape_whitespaces = True, False, True
    return proto.SerializeToString()


#: tokenizers built in this process, by the SHA-256 of their ``tokenizer.json`` bytes (most recent last)
_BUILT: OrderedDict[str, SentencePieceBackend] = OrderedDict()
_BUILT_MAX = 2
_BUILT_LOCK = threading.Lock()


def load(path: Path) -> SentencePieceBackend:
    """Build the sentencepiece tokenizer for ``path``; raises ValueError when it is not convertible.

    Building one takes ~1.4 s (parsing 17 MB of JSON, 250k pieces into a proto), so the last
    ``_BUILT_MAX`` are kept per process, by file content: a bundle loaded again, or a copy of the
    same ``tokenizer.json`` in another bundle, reuses it. The backend holds no per-call state
    (sentencepiece's ``encode`` is const), so sharing it between scorers and threads is safe."""
    raw = Path(path).read_bytes()
    key = hashlib.sha256(raw).hexdigest()
    with _BUILT_LOCK:
        hit = _BUILT.get(key)
        if hit is not None:
            _BUILT.move_to_end(key)
            return hit
    backend = _build(raw, path)
    with _BUILT_LOCK:
        _BUILT[key] = backend
        while len(_BUILT) > _BUILT_MAX:
            _BUILT.popitem(last=False)
    return backend


def _build(raw: bytes, path: Path) -> SentencePieceBackend:
    import sentencepiece

    data = json.loads(raw.decode("utf-8"))
    why = convertible(data)
    if why:
        raise ValueError(f"{path}: {why}")
    bos, eos = _wrap_ids(data)  # type: ignore[misc]
    processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto(data))
    size = len(data["model"]["vocab"])
    added = [int(t["id"]) for t in data.get("added_tokens", [])]
    return SentencePieceBackend(processor, bos, eos, max([size, *(a + 1 for a in added)]))
