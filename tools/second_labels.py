"""Blind second labelling: collect the second pass, list disagreements, record adjudication.

An authoring step run by hand (see data/README.md, "Blind second labels"):

    python tools/second_labels.py collect WORKDIR      # out_*.txt → data/labels2/second_pass.jsonl,
                                                       # WORKDIR/adjudicate.tsv (disagreements, unattributed)
    python tools/second_labels.py record WORKDIR       # WORKDIR/adjudicated.txt → data/labels2/adjudicated.jsonl

WORKDIR holds the labellers' outputs (``out_<name>.txt``: ``key|severity|pf|sentiment``) and
``private/keys*.json`` (key → message id; the labellers never saw ids or first labels).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from training.stats import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
LABELS2 = ROOT / "data" / "labels2"
SENT = {"neg": "negative", "neu": "neutral", "pos": "positive"}
HEADS = ("severity", "private_followup", "sentiment")


def first_labels() -> dict[str, dict]:
    """id → row of every corpus and field-set message, as the files hold it now."""
    return {r["id"]: r for r in read_jsonl([str(ROOT / "data" / "corpus"), str(ROOT / "data" / "field")])}


def keys(workdir: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted((workdir / "private").glob("keys*.json")):
        out.update(json.loads(path.read_text()))
    return out


def collect(workdir: Path) -> None:
    key_ids, first = keys(workdir), first_labels()
    second, disagreements = [], []
    for path in sorted(workdir.glob("out_*.txt")):
        labeller = path.stem.removeprefix("out_")
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.strip().split("|")
            if len(parts) != 4 or parts[0] not in key_ids:
                continue
            key, sev, pf, sen = parts
            rid = key_ids[key]
            rec = {"id": rid, "severity": sev, "private_followup": pf == "1", "sentiment": SENT.get(sen, sen),
                   "labeller": f"second-{labeller}"}
            second.append(rec)
            for head in HEADS:
                if first[rid][head] != rec[head]:
                    disagreements.append((key, head, first[rid], rec[head]))
    seen: set[str] = set()
    second = [s for s in second if not (s["id"] in seen or seen.add(s["id"]))]  # first answer per message
    LABELS2.mkdir(parents=True, exist_ok=True)
    with (LABELS2 / "second_pass.jsonl").open("w", encoding="utf-8") as fh:
        for rec in sorted(second, key=lambda r: r["id"]):
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    rng = random.Random(11)
    with (workdir / "adjudicate.tsv").open("w", encoding="utf-8") as fh:
        for key, head, row, other in disagreements:
            a, b = str(row[head]).lower(), str(other).lower()
            if rng.random() < 0.5:
                a, b = b, a
            text = row["text"].replace("\n", "\\n").replace("\t", " ")
            fh.write(f"{key}\t{head}\t{a}\t{b}\t{row['lang']}\t{row['channel']}\t{text}\n")
    print(f"{len(second)} second labels; {len(disagreements)} disagreements (message × head)")


def record(workdir: Path) -> None:
    key_ids, first = keys(workdir), first_labels()
    second = {json.loads(x)["id"]: json.loads(x) for x in (LABELS2 / "second_pass.jsonl").read_text().splitlines()}
    out = []
    for line in (workdir / "adjudicated.txt").read_text(encoding="utf-8").splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) < 3 or parts[0] not in key_ids:
            continue
        key, head, final = parts[0], parts[1], parts[2]
        rid = key_ids[key]
        value: object = final == "true" if head == "private_followup" else final
        out.append({"id": rid, "head": head, "first": first[rid][head], "second": second[rid][head],
                    "final": value, "rule": parts[3] if len(parts) > 3 else ""})
    with (LABELS2 / "adjudicated.jsonl").open("w", encoding="utf-8") as fh:
        for rec in sorted(out, key=lambda r: (r["id"], r["head"])):
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"{len(out)} adjudications recorded")


if __name__ == "__main__":
    {"collect": collect, "record": record}[sys.argv[1]](Path(sys.argv[2]))
