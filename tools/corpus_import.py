"""Import writers' compact part files into corpus JSONL (an authoring step, run by hand).

Writers author messages in a compact line format (``lang|severity|pf|sentiment|channel|
industry|case|text``, see ``data/README.md``); this turns one writer's parts into
``data/corpus/v2-<writer>.jsonl`` with stable ids ``v2-<writer>-NNNN`` in line order, applies
adjudicated labels from the blind second pass (``data/labels2/adjudicated.jsonl``), and drops
exact and near-duplicates of texts already in the corpus (reported, never silently).

    python tools/corpus_import.py WRITER PART.txt [PART.txt ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from training.dedupe import near_duplicate_pairs, norm  # noqa: E402
from training.stats import read_jsonl  # noqa: E402

SENT = {"neg": "negative", "neu": "neutral", "pos": "positive"}
ADJUDICATED = ROOT / "data" / "labels2" / "adjudicated.jsonl"


def parse_line(line: str) -> dict | None:
    parts = line.rstrip("\n").split("|", 7)
    if len(parts) != 8 or not parts[7].strip():
        return None
    lang, sev, pf, sen, channel, industry, case, text = parts
    row = {"text": text.replace("\\n", "\n").strip(), "lang": lang.split("+")[0], "channel": channel,
           "industry": industry, "severity": sev, "private_followup": pf == "1", "sentiment": SENT[sen], "case": case}
    if "+" in lang:
        row["code_switched"] = True
    return row


def final_labels() -> dict[str, dict]:
    """id → {head: final label} from the adjudication record."""
    out: dict[str, dict] = {}
    if ADJUDICATED.exists():
        for line in ADJUDICATED.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                out.setdefault(rec["id"], {})[rec["head"]] = rec["final"]
    return out


def existing_texts(skip: Path) -> list[str]:
    """Texts of every corpus, challenge and field file except ``skip`` (the file being rewritten)."""
    files = [str(p) for sub in ("corpus", "challenge", "field") for p in sorted((ROOT / "data" / sub).glob("*.jsonl"))
             if p.resolve() != skip]
    return [r["text"] for r in read_jsonl(files)] if files else []


def exact_duplicates(new: list[str], old: list[str]) -> list[int]:
    """Indices of ``new`` texts whose normalised form (4+ characters) appeared earlier on."""
    seen = {norm(t) for t in old if len(norm(t)) > 3}
    exact = []
    for i, text in enumerate(new):
        key = norm(text)
        if len(key) > 3 and key in seen:
            exact.append(i)
        seen.add(key)
    return exact


def near_duplicates(new: list[str], old: list[str], threshold: float = 0.6) -> set[int]:
    """Indices of ``new`` texts with a near-duplicate (5-gram Jaccard >= threshold) earlier on."""
    texts = old + new
    keep = [i for i, t in enumerate(texts) if len(norm(t)) >= 25]
    pairs = near_duplicate_pairs([texts[i] for i in keep], threshold=threshold)
    return {keep[j] - len(old) for _, j, _ in pairs if keep[j] >= len(old)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("writer")
    ap.add_argument("parts", nargs="+", type=Path)
    ap.add_argument("--prefix", default="v2")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "data" / "corpus")
    args = ap.parse_args(argv)
    out = (args.out_dir / f"{args.prefix}-{args.writer}.jsonl").resolve()
    rows, bad_lines = [], 0
    for part in args.parts:
        for line in part.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = parse_line(line)
            if row is None:
                bad_lines += 1
            else:
                rows.append(row)
    for n, row in enumerate(rows, 1):  # ids follow the writer's line order, before any drop
        row["id"] = f"{args.prefix}-{args.writer}-{n:04d}"
    old = existing_texts(skip=out)
    exact = exact_duplicates([r["text"] for r in rows], old)
    near = near_duplicates([r["text"] for r in rows], old)
    drop = set(exact) | near
    fixes = final_labels()
    keep = []
    for i, row in enumerate(rows):
        if i in drop:
            continue
        for head, value in fixes.get(row["id"], {}).items():
            row[head] = value
        keep.append({k: row[k] for k in ("id", "text", "lang", "channel", "industry", "severity", "private_followup",
                                         "sentiment", "case", "code_switched") if k in row})
    with out.open("w", encoding="utf-8") as fh:
        for row in keep:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{out}: {len(keep)} rows written; dropped {len(exact)} exact and {len(near - set(exact))} near "
          f"duplicates, {bad_lines} unparsable lines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
