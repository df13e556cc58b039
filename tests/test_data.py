"""Data checks: the corpus and challenge set must meet the schema and distribution contract.

These tests read the committed files; a broken constraint fails `make test`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.data import split_of
from training.stats import BEGIN, END, read_jsonl, render

ROOT = Path(__file__).resolve().parent.parent
CORPUS = read_jsonl([str(ROOT / "data" / "corpus")])
CHALLENGE = read_jsonl([str(ROOT / "data" / "challenge")])
REQUIRED = {"id": str, "text": str, "lang": str, "channel": str, "industry": str, "severity": str,
            "private_followup": bool, "sentiment": str}
OPTIONAL = {"author_followers": int, "verified": bool, "promoted": bool, "prior_contacts": int, "created_at": str,
            "code_switched": bool, "phenomenon": str}
CHANNELS = {"twitter", "facebook", "instagram", "email", "chat", "sms", "review", "phone_transcript", "other"}
SEVERITY = {"none", "low", "medium", "high", "critical"}
SENTIMENT = {"negative", "neutral", "positive"}


def norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"\W+", " ", text).strip()


@pytest.mark.parametrize("rows", [CORPUS, CHALLENGE], ids=["corpus", "challenge"])
def test_schema_and_allowed_values(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        for key, kind in REQUIRED.items():
            assert isinstance(r.get(key), kind), f"{r.get('id')}: {key}={r.get(key)!r}"
        unknown = set(r) - set(REQUIRED) - set(OPTIONAL)
        assert not unknown, f"{r['id']}: unknown fields {unknown}"
        for key, kind in OPTIONAL.items():
            if key in r:
                assert isinstance(r[key], kind) and not (kind is int and isinstance(r[key], bool)), (r["id"], key)
        assert r["channel"] in CHANNELS and r["severity"] in SEVERITY and r["sentiment"] in SENTIMENT, r["id"]
        assert re.fullmatch(r"[a-z]{2}", r["lang"]), r["id"]
        assert r["text"].strip(), r["id"]
        if "created_at" in r:
            from datetime import datetime

            assert datetime.fromisoformat(r["created_at"]).tzinfo is not None, r["id"]
        assert r.get("author_followers", 0) >= 0 and r.get("prior_contacts", 0) >= 0


def test_ids_unique_across_corpus_and_challenge() -> None:
    ids = [r["id"] for r in CORPUS + CHALLENGE]
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, dupes[:10]


def test_no_exact_duplicates_after_normalisation() -> None:
    seen: dict[str, str] = {}
    clashes = []
    for r in CORPUS + CHALLENGE:
        key = norm(r["text"])
        if key in seen and len(key) > 3:  # "??" and "ok" recur in real traffic and carry no content
            clashes.append((seen[key], r["id"]))
        seen.setdefault(key, r["id"])
    assert not clashes, clashes[:10]


def _shingles(texts: list[str]):  # type: ignore[no-untyped-def]
    from sklearn.feature_extraction.text import HashingVectorizer

    vec = HashingVectorizer(analyzer="char", ngram_range=(5, 5), n_features=2**22, binary=True, norm=None,
                            alternate_sign=False, preprocessor=norm)
    return vec.transform(texts)


def test_no_near_duplicates_across_splits() -> None:
    """Character 5-gram Jaccard ≥ 0.6 between texts of different splits (or corpus vs challenge)."""
    rows = [r for r in CORPUS + CHALLENGE if len(norm(r["text"])) >= 25]
    challenge_ids = {r["id"] for r in CHALLENGE}
    group = np.array(["challenge" if r["id"] in challenge_ids else split_of(r["id"]) for r in rows])
    x = _shingles([r["text"] for r in rows])
    sizes = np.asarray(x.sum(axis=1)).ravel()
    inter = (x @ x.T).tocoo()
    bad = []
    for i, j, common in zip(inter.row, inter.col, inter.data):
        if i < j and group[i] != group[j]:
            jac = common / (sizes[i] + sizes[j] - common)
            if jac >= 0.6:
                bad.append((rows[i]["id"], rows[j]["id"], round(float(jac), 2)))
    assert not bad, bad[:10]


def test_size_and_language_mix() -> None:
    n = len(CORPUS)
    assert n >= 4000, n
    langs = Counter(r["lang"] for r in CORPUS)
    assert langs["en"] / n >= 0.35, langs
    for lang in ("nl", "de", "fr", "es"):
        assert langs[lang] / n >= 0.08, (lang, langs[lang] / n)
    others = {k: v for k, v in langs.items() if k not in {"en", "nl", "de", "fr", "es"}}
    assert sum(others.values()) >= 200 and len([k for k, v in others.items() if v >= 30]) >= 3, others
    assert sum(bool(r.get("code_switched")) for r in CORPUS) >= 50


def test_industries_and_channels() -> None:
    industries = Counter(r["industry"] for r in CORPUS)
    assert len([k for k, v in industries.items() if v >= 30]) >= 12, industries
    channels = Counter(r["channel"] for r in CORPUS)
    assert set(channels) == CHANNELS and min(channels.values()) >= 30, channels


def test_label_distribution() -> None:
    n = len(CORPUS)
    sev = Counter(r["severity"] for r in CORPUS)
    assert all(sev[s] / n >= 0.10 for s in SEVERITY), sev
    pf = sum(r["private_followup"] for r in CORPUS) / n
    assert 0.25 <= pf <= 0.50, pf
    sen = Counter(r["sentiment"] for r in CORPUS)
    assert all(sen[s] / n >= 0.12 for s in SENTIMENT), sen


def test_messiness_of_real_traffic() -> None:
    texts = [r["text"] for r in CORPUS]
    checks = {
        "emoji": sum(bool(re.search(r"[\U0001F300-\U0001FAFF\u2600-\u27BF]", t)) for t in texts),
        "url": sum(bool(re.search(r"https?://|www\.|\b[\w-]+\.(com|net|org)/", t)) for t in texts),
        "handle": sum(bool(re.search(r"(^|\s)@\w+", t)) for t in texts),
        "hashtag": sum(bool(re.search(r"(^|\s)#[^\W\d]\w+", t)) for t in texts),
        "all_caps_word_run": sum(bool(re.search(r"\b[A-Z]{4,}\b.*\b[A-Z]{4,}\b", t)) for t in texts),
        "very_short": sum(len(t.strip()) <= 12 for t in texts),
        "long": sum(len(t) >= 700 for t in texts),
        "multi_paragraph": sum("\n\n" in t for t in texts),
    }
    assert all(v >= 20 for v in checks.values()), checks


def test_invented_contact_details_only() -> None:
    for r in CORPUS + CHALLENGE:
        for email in re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", r["text"]):
            assert re.search(r"@example\.(com|net|org)$", email), (r["id"], email)
        for domain in re.findall(r"\b((?:[\w-]+\.)+(?:com|net|org))/", r["text"]):
            assert re.fullmatch(r"([\w-]+\.)*example\.(com|net|org)", domain), (r["id"], domain)


def test_splits_are_stratified_and_stable() -> None:
    n = len(CORPUS)
    split = Counter(split_of(r["id"]) for r in CORPUS)
    assert abs(split["train"] / n - 0.8) < 0.03 and abs(split["test"] / n - 0.1) < 0.03, split
    strata: dict[tuple[str, str], Counter[str]] = {}
    for r in CORPUS:
        strata.setdefault((r["severity"], r["lang"]), Counter())[split_of(r["id"])] += 1
    for key, c in strata.items():
        total = sum(c.values())
        if total >= 80:
            assert abs(c["train"] / total - 0.8) < 0.1, (key, c)
    # a pure function of the id: these answers are fixed forever, whatever else is in the corpus
    golden = {"en-travel-0001": "test", "nl-0003": "train", "de-0001": "test", "nl-0001": "validation",
              "es-0007": "train"}
    assert {i: split_of(i) for i in golden} == golden


def test_challenge_set() -> None:
    assert len(CHALLENGE) >= 300
    phenomena = Counter(r.get("phenomenon") for r in CHALLENGE)
    for p in ("sarcasm", "negation", "code_switching", "heavy_typos", "mixed_praise_complaint"):
        assert phenomena[p] >= 15, phenomena


def test_data_card_counts_are_current() -> None:
    card = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    block = card.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert block == render(CORPUS, CHALLENGE).strip(), "data/README.md is stale: run `make data-stats`"
