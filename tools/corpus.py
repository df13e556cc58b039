"""Realistic inputs for the tools: the corpus read once, seeded message samples, JSONL files.

Texts come from ``data/corpus/*.jsonl`` and ``data/challenge/*.jsonl`` (plain ``json``, no
training imports); without a corpus a small built-in multilingual list is used instead.
Standard library only, so importing it never pulls in the model or torch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
# metadata the batch CLI reads (service.batch.config.Columns defaults), copied into generated rows
META_FIELDS = ("channel", "author_followers", "verified", "promoted", "prior_contacts", "created_at")

BUILTIN_TEXTS = (
    "@SkyWaysAir my bag never arrived in Madrid and nobody answers. 3rd time asking!!",
    "thanks for the quick fix, app works again 👍",
    "Mijn pakket is nog steeds niet bezorgd, ordernummer #A7K-22913. Kunnen jullie even kijken?",
    "Ich kündige sofort, das ist Betrug! Ich gehe zur Verbraucherzentrale.",
    "Bonjour, est-ce que vous livrez en Belgique ?",
    "¿Dónde está mi reembolso? Ya pasaron 3 semanas y nadie responde.",
    "You charged my card twice for the same order. Please refund the duplicate payment today.",
    "Internet down again since this morning, third outage this week. I work from home!",
    "Il treno delle 8:15 è stato cancellato senza alcun avviso, di nuovo.",
    "O aplicativo trava toda vez que tento pagar a fatura. Já reinstalei duas vezes.",
    "Great service at the Lyon store today, the staff were really helpful.",
    "My account was locked and I can't access my salary. Your chatbot keeps sending me in circles.",
    "Pizza kam kalt an und der Käse war gummiartig. 2 Sterne.",
    "Le colis est marqué livré mais je n'ai rien reçu. Numéro de suivi 8842-XK.",
    "Is there a student discount on the annual plan?",
    "I have been on hold for 2 hours. This is unacceptable for a medical emergency line.",
)


def load_records(data_dir: Path = DATA_DIR, subsets: tuple[str, ...] = ("corpus", "challenge")
                 ) -> list[dict[str, Any]]:
    """Every row of the ``subsets`` with a non-empty text (files in sorted order, for determinism)."""
    records: list[dict[str, Any]] = []
    for sub in subsets:
        for path in sorted((data_dir / sub).glob("*.jsonl")):
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(row, dict) and isinstance(row.get("text"), str) and row["text"].strip():
                        records.append(row)
    return records or [{"text": t} for t in BUILTIN_TEXTS]


def shuffled_texts(records: list[dict[str, Any]], seed: int) -> list[str]:
    """All texts in a seeded random order (the pool the load generator cycles through)."""
    texts = [str(r["text"]) for r in records]
    random.Random(seed).shuffle(texts)
    return texts


def sample_texts(pool: list[str], n: int, seed: int) -> list[str]:
    """``n`` texts drawn from ``pool``: a seeded permutation, repeated when ``n`` is larger."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        block = list(pool)
        rng.shuffle(block)
        out.extend(block[: n - len(out)])
    return out


def write_messages_jsonl(path: Path, records: list[dict[str, Any]], n: int, seed: int) -> list[str]:
    """Write ``n`` rows sampled (with replacement) from ``records``, each with a fresh id and the
    record's metadata; returns the texts in file order."""
    rng = random.Random(seed)
    texts: list[str] = []
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            rec = records[rng.randrange(len(records))]
            row: dict[str, Any] = {"id": f"bench-{i:08d}", "text": rec["text"]}
            row.update({k: rec[k] for k in META_FIELDS if rec.get(k) is not None})
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            texts.append(rec["text"])
    return texts


def write_texts_json(path: Path, texts: list[str]) -> Path:
    """The text pool for the load-generator process."""
    path.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    return path
