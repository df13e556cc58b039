"""Vocabulary trim at the ONNX level: the tokenizer stays as it is.

The e5/XLM-R vocabulary has 250,002 pieces for ~100 languages; the served languages use a small
fraction of them, yet the 250k × 384 embedding matrix is three quarters of the fp32 model. The trim
puts an int lookup (old id → new id, a Gather on an int32 table) in front of a smaller embedding
table. Kept pieces keep their exact row, so every text made only of kept pieces scores bit-for-bit
as before; every other id is sent to the ``<unk>`` row. Nothing changes outside the model file.

Kept pieces, in order of priority until the target count is reached:
1. the special tokens (``<s>``, ``<pad>``, ``</s>``, ``<unk>``);
2. single-character pieces of the served scripts (Latin by default) and of no script (digits,
   punctuation, symbols, emoji), so no served character is ever lost;
3. pieces seen in the training split, most frequent first;
4. the remaining single-character pieces (other scripts);
5. pieces of the served scripts by Unigram score (the tokenizer's own log-probability).
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>")
MAP_NAME = "vocab_trim.old_to_new"


class VocabTrimError(RuntimeError):
    """The model graph or tokenizer does not have the shape the trim expects."""


def char_script(ch: str) -> str:
    """First word of the character's Unicode name for letters (LATIN, CYRILLIC, CJK…); "COMMON" for
    everything that belongs to no script (digits, punctuation, symbols, emoji, combining marks and
    variation selectors, which follow the script of the letter they modify)."""
    if unicodedata.category(ch)[0] != "L":
        return "COMMON"
    try:
        return unicodedata.name(ch).split()[0]
    except ValueError:  # unnamed code point
        return "UNKNOWN"


def in_scripts(piece: str, scripts: Sequence[str]) -> bool:
    """True when every character of the piece (the ``▁`` word marker aside) is in ``scripts`` or COMMON."""
    allowed = {s.upper() for s in scripts} | {"COMMON"}
    return all(char_script(c) in allowed for c in piece.replace("▁", ""))


def unigram_pieces(tokenizer_json: Path) -> list[tuple[str, float]]:
    """(piece, score) per id of a Unigram ``tokenizer.json``."""
    data = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    model = data.get("model", {})
    if model.get("type") != "Unigram":
        raise VocabTrimError(f"{tokenizer_json}: vocabulary trim needs a Unigram tokenizer, got {model.get('type')}")
    return [(str(p), float(s)) for p, s in model["vocab"]]


@dataclass(frozen=True)
class KeptVocab:
    """The kept old ids (ascending) and why: how many came from each rule."""

    ids: np.ndarray  # int64, sorted old ids
    unk_id: int
    counts: dict[str, int]

    def old_to_new(self, rows: int) -> np.ndarray:
        """int32 lookup over ``rows`` old ids: kept ids → their new row, the rest → the ``<unk>`` row."""
        new_unk = int(np.searchsorted(self.ids, self.unk_id))
        table = np.full(rows, new_unk, dtype=np.int32)
        table[self.ids] = np.arange(len(self.ids), dtype=np.int32)
        return table


def choose_kept(pieces: Sequence[tuple[str, float]], train_ids: Iterable[Sequence[int]], target: int,
                scripts: Sequence[str] = ("LATIN",)) -> KeptVocab:
    """Pick up to ``target`` pieces by the rules in the module docstring."""
    if target < len(SPECIAL_PIECES) + 1:
        raise VocabTrimError(f"vocabulary target {target} is too small")
    names = [p for p, _ in pieces]
    missing = [s for s in SPECIAL_PIECES if s not in names[:8]]
    if missing:
        raise VocabTrimError(f"tokenizer lacks the special pieces {missing} among its first ids")
    single = [i for i, p in enumerate(names) if len(p.replace("▁", "")) == 1]
    served = [i for i in single if in_scripts(names[i], scripts)]
    freq = Counter(i for row in train_ids for i in row)
    by_score = sorted((i for i, (p, _) in enumerate(pieces) if in_scripts(p, scripts)),
                      key=lambda i: -pieces[i][1])
    rules = {"special": [names.index(s) for s in SPECIAL_PIECES], "single_char_served": served,
             "train_frequency": [i for i, _ in freq.most_common() if i < len(names)],
             "single_char_other": single, "unigram_score": by_score}
    kept: dict[int, None] = {}
    counts: dict[str, int] = {}
    for rule, ids in rules.items():
        before = len(kept)
        for i in ids:
            if len(kept) >= target:
                break
            kept.setdefault(i, None)
        counts[rule] = len(kept) - before
    return KeptVocab(np.array(sorted(kept), dtype=np.int64), names.index("<unk>"), counts)


def outside_share(kept: KeptVocab, ids: Sequence[Sequence[int]]) -> dict[str, float]:
    """Share of tokens, and of texts with at least one token, that the trim sends to ``<unk>``."""
    keep = np.zeros(int(max(kept.ids.max(), max((max(r) for r in ids if r), default=0))) + 1, dtype=bool)
    keep[kept.ids] = True
    flags = [keep[np.asarray(r, dtype=np.int64)] for r in ids if r]
    tokens = sum(len(f) for f in flags)
    return {"tokens": round(float(sum(int((~f).sum()) for f in flags) / max(tokens, 1)), 5),
            "texts": round(float(np.mean([bool((~f).any()) for f in flags])) if flags else 0.0, 5)}


def trim_tokenizer(src: Path, dst: Path, scripts: Sequence[str]) -> dict[str, int]:
    """Write a ``tokenizer.json`` with the same ids in which every piece holding a letter outside
    ``scripts`` is replaced by an unmatchable placeholder (a NUL, which text normalisation removes).

    A piece can only match text that contains all of its characters, so every text written in the
    served scripts (plus digits, punctuation, emoji) tokenises exactly as before; other scripts fall
    back to single characters or ``<unk>`` (their rows were not kept by the trim anyway). The
    tokenizer's in-memory trie shrinks with the pieces (282 → 133 MiB resident for e5).
    """
    data = json.loads(Path(src).read_text(encoding="utf-8"))
    vocab = data.get("model", {}).get("vocab")
    if data.get("model", {}).get("type") != "Unigram" or not isinstance(vocab, list):
        raise VocabTrimError(f"{src}: tokenizer trim needs a Unigram tokenizer")
    special = {str(t.get("content")) for t in data.get("added_tokens", [])}
    replaced = 0
    for i, (piece, score) in enumerate(vocab):
        if piece not in special and not in_scripts(piece, scripts):
            vocab[i] = ["\u0000", score]
            replaced += 1
    Path(dst).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return {"pieces": len(vocab), "placeholders": replaced}


def _word_embedding_gather(graph: object) -> tuple[object, object]:
    """The Gather node that reads the word-embedding initializer with ``input_ids``, and that initializer."""
    inits = {i.name: i for i in graph.initializer}  # type: ignore[attr-defined]
    for node in graph.node:  # type: ignore[attr-defined]
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == "input_ids" \
                and node.input[0] in inits and len(inits[node.input[0]].dims) == 2:
            return node, inits[node.input[0]]
    raise VocabTrimError("no Gather(word-embedding initializer, input_ids) node in the graph")


def int8_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: ``rows ≈ q * scale`` (scale [n, 1] float32)."""
    scale = np.maximum(np.abs(rows).max(axis=1, keepdims=True), 1e-12) / 127.0
    q = np.clip(np.rint(rows / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def tail_ids(pieces: Sequence[tuple[str, float]], kept: KeptVocab, scripts: Sequence[str]) -> np.ndarray:
    """Pieces of the served scripts that were not kept: they get an int8 row instead of ``<unk>``."""
    keep = set(kept.ids.tolist())
    return np.array([i for i, (p, _) in enumerate(pieces) if i not in keep and in_scripts(p, scripts)],
                    dtype=np.int64)


def served_table(table: np.ndarray, kept: KeptVocab, tail: np.ndarray | None = None,
                 fp16_min_elements: int = 0) -> np.ndarray:
    """The word-embedding row the converted graph reads for every old id, as one float32 table of
    ``table``'s shape: :func:`trim_onnx` (kept rows exact, the tail as per-row int8, the rest the
    ``<unk>`` row), then, with ``fp16_min_elements``, fp16 storage of every float tensor that large
    (training.optimize.fp16_storage). A model whose table already holds these rows converts to a
    graph that computes exactly what it computed (the mapping is idempotent), which is how a
    quantisation-aware student is trained on the embeddings it is served with."""
    from training.optimize import fp16_stored

    exact = fp16_stored(np.ascontiguousarray(table[kept.ids], dtype=np.float32), fp16_min_elements)
    out = exact[kept.old_to_new(table.shape[0])]
    if tail is not None and len(tail):
        q, scale = int8_rows(table[tail])
        out[tail] = q.astype(np.float32) * fp16_stored(scale, fp16_min_elements)
    return out


def trim_onnx(src: Path, dst: Path, kept: KeptVocab, tail: np.ndarray | None = None) -> dict[str, int]:
    """Write ``dst``: ``src`` with the word embedding cut to the kept rows behind an id lookup.

    With ``tail`` (old ids, disjoint from the kept ones) those rows are stored as per-row int8 in a
    second table; a bool lookup picks the row from the exact table for kept ids (so texts of kept
    pieces stay bit-identical) and from the dequantised tail otherwise; the rest → ``<unk>``.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    node, weight = _word_embedding_gather(graph)
    table = numpy_helper.to_array(weight)
    rows = table.shape[0]
    if int(kept.ids.max()) >= rows:
        raise VocabTrimError(f"kept id {int(kept.ids.max())} is outside the {rows}-row embedding")
    weight.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(table[kept.ids]), weight.name))
    stale = [v for v in graph.value_info if v.name == weight.name]  # the exporter's [rows, hidden] shape
    for v in stale:
        graph.value_info.remove(v)
    old_to_new = kept.old_to_new(rows)
    graph.initializer.append(numpy_helper.from_array(old_to_new, MAP_NAME))
    new_nodes = [helper.make_node("Gather", [MAP_NAME, "input_ids"], ["vocab_trim.new_ids"],
                                  name="vocab_trim_lookup", axis=0)]
    final_out = node.output[0]
    node.input[1] = "vocab_trim.new_ids"
    if tail is not None and len(tail):
        if np.isin(tail, kept.ids).any() or int(tail.max()) >= rows:
            raise VocabTrimError("tail ids must be new ids inside the embedding")
        q, scale = int8_rows(table[tail])
        tail_map = np.zeros(rows, dtype=np.int32)
        tail_map[tail] = np.arange(len(tail), dtype=np.int32)
        is_exact = np.ones(rows, dtype=bool)
        is_exact[tail] = False
        for name, arr in (("vocab_trim.tail_map", tail_map), ("vocab_trim.tail_q", q),
                          ("vocab_trim.tail_scale", scale), ("vocab_trim.is_exact", is_exact.reshape(rows, 1))):
            graph.initializer.append(numpy_helper.from_array(arr, name))
        node.output[0] = "vocab_trim.exact_rows"
        new_nodes += [
            helper.make_node("Gather", ["vocab_trim.tail_map", "input_ids"], ["vocab_trim.tail_ids"],
                             name="vocab_trim_tail_lookup", axis=0),
            helper.make_node("Gather", ["vocab_trim.tail_q", "vocab_trim.tail_ids"], ["vocab_trim.tail_qrows"],
                             name="vocab_trim_tail_gather", axis=0),
            helper.make_node("Gather", ["vocab_trim.tail_scale", "vocab_trim.tail_ids"], ["vocab_trim.tail_srows"],
                             name="vocab_trim_tail_scale", axis=0),
            helper.make_node("Cast", ["vocab_trim.tail_qrows"], ["vocab_trim.tail_frows"],
                             name="vocab_trim_tail_cast", to=onnx.TensorProto.FLOAT),
            helper.make_node("Mul", ["vocab_trim.tail_frows", "vocab_trim.tail_srows"], ["vocab_trim.tail_rows"],
                             name="vocab_trim_tail_dequant"),
            helper.make_node("Gather", ["vocab_trim.is_exact", "input_ids"], ["vocab_trim.exact"],
                             name="vocab_trim_exact_lookup", axis=0),
        ]
        select = helper.make_node("Where", ["vocab_trim.exact", "vocab_trim.exact_rows", "vocab_trim.tail_rows"],
                                  [final_out], name="vocab_trim_select")
    index = list(graph.node).index(node)
    for offset, extra in enumerate(new_nodes):
        graph.node.insert(index + offset, extra)
    if tail is not None and len(tail):
        graph.node.insert(index + len(new_nodes) + 1, select)
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return {"rows_before": int(rows), "rows_after": int(len(kept.ids)),
            "tail_int8_rows": int(len(tail)) if tail is not None else 0}
