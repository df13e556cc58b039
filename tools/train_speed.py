"""Training throughput of the fine-tuning step under different settings (samples/s).

    CT_CACHE_DIR=.cache .venv/bin/python -m tools.train_speed '[{}, {"bf16": true}, {"bf16": true, "freeze": 4, "bs": 32}]'

Each setting runs 30 optimizer steps (after 3 warm-up steps) on 1,200 corpus messages in
length-grouped batches: keys ``bf16``, ``freeze`` (frozen lower layers), ``bs``, ``max_len``,
``kind`` (severity loss). The README's CPU-speed figures come from this script.
"""
import json
import random
import sys
import time
from pathlib import Path

import torch

from model.text import TextEncoder
from training.backbone import resolve
from training.data import load_examples
from training.modeling import load_model, multitask_loss
from training.train import _inputs, _labels, autocast, length_grouped_batches


def run(bb, ex, bf16=False, freeze=0, bs=16, max_len=128, steps=30, kind="softmax"):  # type: ignore[no-untyped-def]
    """Samples per second of optimizer steps with these settings."""
    enc = TextEncoder.from_file(str(bb.tokenizer_json), max_length=max_len, prefix=bb.prefix, pad_id=bb.pad_id)
    m = load_model(str(bb.path), 0.1, True, kind, freeze)
    m.train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=5e-5)
    ids, _ = enc.token_ids([e.text for e in ex])
    batches = length_grouped_batches([len(r) for r in ids], bs, random.Random(1))[:steps+3]
    n = 0
    for i, rows in enumerate(batches):
        if i == 3:  # warm-up done
            t0, n = time.perf_counter(), 0
        with autocast(bf16):
            out = m(*_inputs(enc, [ids[j] for j in rows]))
        loss = multitask_loss(out, *_labels(ex, rows), kind=kind)
        loss.backward()
        opt.step()
        opt.zero_grad()
        n += len(rows)
    return n / (time.perf_counter() - t0)
def main() -> None:
    torch.set_num_threads(2)
    bb = resolve("multilingual-e5-small")
    ex = load_examples([str(Path(__file__).resolve().parent.parent / "data" / "corpus")])
    random.Random(0).shuffle(ex)
    for cfg in json.loads(sys.argv[1]):
        print(cfg, f"{run(bb, ex[:1200], **cfg):.1f} samples/s", flush=True)


if __name__ == "__main__":
    main()
