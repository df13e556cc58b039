"""The conversion gate: smaller / faster graphs of the same weights, kept only when they agree.

Steps, applied one on top of the other to the fp32 model installed in the bundle:
``vocab_trim`` (training.vocab) → ``optimize`` (ORT transformer optimizer) → ``fuse_attention``
(training.optimize) → ``fp16_storage``.
The final candidate is compared with the fp32 model on every head's decisions over test,
challenge and field; it ships when every head agrees on ≥ ``min_conversion_agreement`` of every
set. When it fails, the steps are checked one by one and the longest passing prefix ships (fp32
untrimmed when none passes). Everything measured goes into ``metrics.conversion``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from model.bundle import MODEL_FILE, TOKENIZER_FILE
from model.scorer import Scorer
from training.evaluate import bundle_decisions

Step = tuple[str, Callable[[Path, Path], dict[str, Any]]]


def agreement(ref: dict[str, dict[str, np.ndarray]], scorer: Scorer,
              sets: dict[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Share of equal decisions per set and head, ``scorer`` vs the reference decisions."""
    out: dict[str, dict[str, float]] = {}
    for name, texts in sets.items():
        got = bundle_decisions(scorer.predict(texts), scorer.meta)
        out[name] = {h: round(float(np.mean(got[h] == ref[name][h])), 5) for h in got}
    return out


def worst(agree: dict[str, dict[str, float]]) -> float:
    return min((v for heads in agree.values() for v in heads.values()), default=1.0)


def trim_choice(cfg: Any, train_texts: Sequence[str], encoder: Any,
                tokenizer_json: Path) -> tuple[Any, np.ndarray | None]:
    """The pieces the vocabulary trim keeps exact (training.vocab.KeptVocab) and its int8 tail ids
    (None without ``vocab_tail_int8``), chosen from the training texts: the same at every call."""
    from training.vocab import choose_kept, tail_ids, unigram_pieces

    pieces = unigram_pieces(tokenizer_json)
    kept = choose_kept(pieces, encoder.token_ids(train_texts)[0], cfg.vocab_trim, cfg.vocab_scripts)
    return kept, tail_ids(pieces, kept, cfg.vocab_scripts) if cfg.vocab_tail_int8 else None


def build_steps(cfg: Any, train_texts: Sequence[str], encoder: Any, tokenizer_json: Path,
                sets: dict[str, Sequence[str]], shape: tuple[int, int]) -> list[Step]:
    """The enabled conversion steps, each a function (src model, dst model) → info;
    ``shape`` = (attention heads, hidden size) of the encoder, for the optimizer."""
    from training.optimize import fp16_storage, fuse_attention, optimize_bert
    from training.vocab import outside_share, trim_onnx, trim_tokenizer

    steps: list[Step] = []
    if cfg.vocab_trim:
        def trim(src: Path, dst: Path) -> dict[str, Any]:
            kept, tail = trim_choice(cfg, train_texts, encoder, tokenizer_json)
            info = trim_onnx(src, dst, kept, tail)
            if cfg.trim_tokenizer:
                info["tokenizer"] = trim_tokenizer(tokenizer_json, dst.with_suffix(".tokenizer.json"),
                                                   cfg.vocab_scripts)
            exact = {k: outside_share(kept, encoder.token_ids(v)[0]) for k, v in sets.items()}
            return {**info, "kept_by_rule": kept.counts, "scripts": list(cfg.vocab_scripts),
                    "outside_exact_rows": exact}
        steps.append(("vocab_trim", trim))
    if cfg.optimize_graph:
        steps.append(("optimize", lambda s, d: {"op_counts": optimize_bert(s, d, *shape)}))
    if cfg.fuse_attention:
        steps.append(("fuse_attention", lambda s, d: fuse_attention(s, d, shape[0])))
    if cfg.fp16_weights:
        steps.append(("fp16_storage", fp16_storage))
    return steps


def convert(work: Path, steps: Sequence[Step], sets: dict[str, Sequence[str]], min_agreement: float,
            load: Callable[[Path], Scorer]) -> dict[str, Any]:
    """Apply ``steps`` to ``work/model.onnx`` (fp32); keep the longest passing prefix in place."""
    fp32 = work / "model.conv-fp32.onnx"
    shutil.copy(work / MODEL_FILE, fp32)
    tok0 = work / "model.conv-fp32.tokenizer.json"
    shutil.copy(work / TOKENIZER_FILE, tok0)
    t0 = time.monotonic()
    fp32_scorer = load(work)
    ref = {k: bundle_decisions(fp32_scorer.predict(v), fp32_scorer.meta) for k, v in sets.items()}
    info: dict[str, Any] = {"min_agreement": min_agreement, "fp32_mib": _mib(fp32), "steps": []}
    files, toks, src = [], [], fp32
    for name, fn in steps:
        dst = work / f"model.conv-{name}.onnx"
        t = time.monotonic()
        step = {"step": name, **fn(src, dst)}
        step.update(mib=_mib(dst), build_s=round(time.monotonic() - t, 1))
        info["steps"].append(step)
        files.append(dst)
        tok = dst.with_suffix(".tokenizer.json")  # a step may also write a tokenizer; later ones inherit it
        toks.append(tok if tok.exists() else (toks[-1] if toks else tok0))
        src = dst
    chosen = _choose(work, list(zip(files, toks)), info["steps"], ref, sets, min_agreement, load)
    names = [s["step"] for s in info["steps"]][:chosen]
    _install(work, *((files[chosen - 1], toks[chosen - 1]) if chosen else (fp32, tok0)))
    for f in [fp32, tok0, *files, *toks]:
        f.unlink(missing_ok=True)
    info.update(kept="fp32" + "".join(f"+{n}" for n in names), mib=_mib(work / MODEL_FILE),
                tokenizer_mib=_mib(work / TOKENIZER_FILE),
                gate_s=round(time.monotonic() - t0, 1))
    failed = [s for s in info["steps"] if s.get("passed") is False]
    info["reason"] = (f"{failed[0]['step']} failed the gate: worst agreement {failed[0]['worst']:.4f} "
                      f"< {min_agreement}" if failed else "every step passed the agreement gate" if names
                      else "no conversion step enabled")
    return info


def _install(work: Path, model: Path, tokenizer: Path) -> None:
    shutil.copy(model, work / MODEL_FILE)
    shutil.copy(tokenizer, work / TOKENIZER_FILE)


def _choose(work: Path, files: list[tuple[Path, Path]], steps: list[dict[str, Any]], ref: dict[str, Any],
            sets: dict[str, Sequence[str]], min_agreement: float, load: Callable[[Path], Scorer]) -> int:
    """Number of steps to keep: all when the last passes; else the longest prefix that passes."""
    def check(i: int) -> bool:
        _install(work, *files[i])
        agree = agreement(ref, load(work), sets)
        steps[i].update(agreement=agree, worst=worst(agree), passed=worst(agree) >= min_agreement)
        return bool(steps[i]["passed"])

    if not files or check(len(files) - 1):
        return len(files)
    for i in range(len(files) - 1):
        if not check(i):
            return i
    return len(files) - 1


def _mib(path: Path) -> float:
    return round(path.stat().st_size / 2**20, 1)


def serving_rss_mib(bundle: Path, texts: Sequence[str], mem_arena: bool = False,
                    verify: bool = True) -> dict[str, float]:
    """Resident memory (psutil) of a fresh process after loading the bundle and scoring ``texts``."""
    code = (
        "import json, sys, psutil; from model.scorer import Scorer; "
        "s = Scorer.load(sys.argv[1], mem_arena=sys.argv[2] == '1', verify=sys.argv[3] == '1'); "
        "loaded = psutil.Process().memory_info().rss; s.predict(json.loads(sys.stdin.read())); "
        "print(json.dumps([loaded / 2**20, psutil.Process().memory_info().rss / 2**20]))"
    )
    res = subprocess.run([sys.executable, "-c", code, str(bundle), "1" if mem_arena else "0",
                          "1" if verify else "0"],
                         input=json.dumps(list(texts)), capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parent.parent))
    loaded, scored = json.loads(res.stdout.strip().splitlines()[-1])
    return {"after_load": round(loaded, 1), "after_scoring": round(scored, 1)}
