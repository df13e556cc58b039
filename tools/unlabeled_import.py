"""Import writers' unlabeled part files into ``data/unlabeled/<writer>.jsonl`` (an authoring step,
run by hand).

Writers author one message per line as ``lang|channel|industry|text`` (a line break inside a
message written as ``\\n``), with no labels: the rows are the student's extra distillation text
(``--student-unlabeled``), labelled by the teacher. Ids are ``unl-<writer>-NNNN`` in line order;
exact and near-duplicates of each other and of every corpus, challenge and field text are
dropped, and lines with an unknown channel or industry are reported and skipped, never silently.
Prints the style figures of ``shared/REAL_TRAFFIC.md`` per channel for the written rows.

    python tools/unlabeled_import.py WRITER PART.txt [PART.txt ...]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools.corpus_import import exact_duplicates, existing_texts, near_duplicates  # noqa: E402

CHANNELS = {"twitter", "facebook", "instagram", "sms", "chat", "review", "email", "phone_transcript", "other"}
INDUSTRIES = {"bank", "telecom", "airline", "ecommerce", "rail", "food_delivery", "logistics", "insurance", "retail",
              "public_transport", "hotel", "streaming", "energy", "gaming", "government", "healthcare",
              "automotive", "fintech", "utility", "software", "travel", "media", "education"}
EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")
HASHTAG = re.compile(r"#\w")


def parse_line(line: str) -> dict | str:
    """A row, or the reason the line is unusable."""
    parts = line.rstrip("\n").split("|", 3)
    if len(parts) != 4 or not parts[3].strip():
        return "not lang|channel|industry|text"
    lang, channel, industry, text = (p.strip() for p in parts)
    if not re.fullmatch(r"[a-z]{2}", lang):
        return f"language {lang!r}"
    if channel not in CHANNELS:
        return f"channel {channel!r}"
    if industry not in INDUSTRIES:
        return f"industry {industry!r}"
    return {"text": text.replace("\\n", "\n").strip(), "lang": lang, "channel": channel, "industry": industry}


def style(rows: list[dict]) -> str:
    """n, words p10/median/p90, % @mention, % starts with @, % URL, % hashtag, % emoji, % ?, % !"""
    words = sorted(len(r["text"].split()) for r in rows)
    n = len(rows)

    def pct(pred) -> str:  # type: ignore[no-untyped-def]
        return f"{100 * sum(bool(pred(r['text'])) for r in rows) / n:.0f}"

    q = statistics.quantiles(words, n=10) if n > 1 else [words[0]] * 9
    return (f"n {n}  words {q[0]:.0f}/{statistics.median(words):.0f}/{q[8]:.0f}  @ {pct(lambda t: '@' in t)}  "
            f"starts@ {pct(lambda t: t.startswith('@'))}  url {pct(lambda t: 'http' in t)}  "
            f"# {pct(HASHTAG.search)}  emoji {pct(EMOJI.search)}  ? {pct(lambda t: '?' in t)}  "
            f"! {pct(lambda t: '!' in t)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("writer")
    ap.add_argument("parts", nargs="+", type=Path)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "data" / "unlabeled")
    args = ap.parse_args(argv)
    out = (args.out_dir / f"{args.writer}.jsonl").resolve()
    rows, bad = [], []
    for part in args.parts:
        for k, line in enumerate(part.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = parse_line(line)
            if isinstance(row, str):
                bad.append(f"{part}:{k}: {row}")
            else:
                rows.append(row)
    for n, row in enumerate(rows, 1):  # ids follow the writer's line order, before any drop
        row["id"] = f"unl-{args.writer}-{n:04d}"
    old = existing_texts(skip=out) + [r["text"] for p in sorted(args.out_dir.glob("*.jsonl")) if p.resolve() != out
                                      for r in map(json.loads, p.read_text(encoding="utf-8").splitlines())]
    exact = exact_duplicates([r["text"] for r in rows], old)
    drop = set(exact) | near_duplicates([r["text"] for r in rows], old)
    keep = [{k: row[k] for k in ("id", "text", "lang", "channel", "industry")} for i, row in enumerate(rows)
            if i not in drop]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for row in keep:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    for line in bad:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{out}: {len(keep)} rows written; dropped {len(exact)} exact and {len(drop) - len(exact)} near "
          f"duplicates, {len(bad)} unusable lines", file=sys.stderr)
    for channel in sorted({r["channel"] for r in keep}):
        sub = [r for r in keep if r["channel"] == channel]
        print(f"  {channel:16s} {style(sub)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
