"""Data checks: the corpus and challenge set must meet the schema and distribution contract.

These tests read the committed files; a broken constraint fails `make test`.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from training.data import split_of
from training.dedupe import near_duplicate_pairs, norm
from training.stats import ACCUSATION_CASES, BEGIN, END, HARD_NEGATIVE_CASES, read_jsonl, read_v2_extras, render

ROOT = Path(__file__).resolve().parents[2]
CORPUS = read_jsonl([str(ROOT / "data" / "corpus")])
CHALLENGE = read_jsonl([str(ROOT / "data" / "challenge")])
FIELD, SECOND, ADJUDICATED = read_v2_extras(ROOT / "data")
NONE_CASES = set(HARD_NEGATIVE_CASES) | {"praise", "spam", "chitchat"}
REQUIRED = {"id": str, "text": str, "lang": str, "channel": str, "industry": str, "severity": str,
            "private_followup": bool, "sentiment": str}
OPTIONAL = {"author_followers": int, "verified": bool, "promoted": bool, "prior_contacts": int, "created_at": str,
            "code_switched": bool, "phenomenon": str, "case": str}
CHANNELS = {"twitter", "facebook", "instagram", "email", "chat", "sms", "review", "phone_transcript", "other"}
SEVERITY = {"none", "low", "medium", "high", "critical"}
SENTIMENT = {"negative", "neutral", "positive"}


@pytest.mark.parametrize("rows", [CORPUS, CHALLENGE, FIELD], ids=["corpus", "challenge", "field"])
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
    ids = [r["id"] for r in CORPUS + CHALLENGE + FIELD]
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


def test_no_near_duplicates_across_splits() -> None:
    """Character 5-gram Jaccard ≥ 0.6 between texts of different splits (or corpus vs challenge/field)."""
    rows = [r for r in CORPUS + CHALLENGE + FIELD if len(norm(r["text"])) >= 25]
    extra = {r["id"]: "challenge" for r in CHALLENGE} | {r["id"]: "field" for r in FIELD}
    groups = [extra.get(r["id"]) or split_of(r["id"]) for r in rows]
    bad = [(rows[i]["id"], rows[j]["id"], round(v, 2)) for i, j, v in near_duplicate_pairs([r["text"] for r in rows],
                                                                                          groups)]
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
    assert block == render(CORPUS, CHALLENGE, FIELD, SECOND, ADJUDICATED).strip(), \
        "data/README.md is stale: run `make data-stats`"


V2 = [r for r in CORPUS if "case" in r]


def test_corpus_v2_volume_and_mix() -> None:
    """Mixed like a brand's inbound stream: many non-complaints, hard negatives, accusations."""
    assert len(V2) >= 15000, len(V2)
    n = len(CORPUS)
    assert sum(r["severity"] == "none" for r in CORPUS) / n >= 0.35
    relabelled = {a["id"] for a in ADJUDICATED if a["head"] == "severity" and a["final"] != a["first"]}
    for r in V2:  # the writer's case tag agrees with the severity (unless adjudication moved it)
        if r["id"] not in relabelled:
            assert (r["case"] in NONE_CASES) == (r["severity"] == "none"), r["id"]
    cases = Counter(r["case"] for r in V2)
    assert sum(cases[c] for c in HARD_NEGATIVE_CASES) >= 3000, cases
    assert sum(r["case"] in ACCUSATION_CASES and r["severity"] in ("high", "critical") for r in V2) >= 1500
    assert cases["thread_reply"] + cases["thread_followup"] >= 500, cases
    tweets = [r for r in V2 if r["channel"] == "twitter"]
    short = sum(len(r["text"].split()) <= 7 for r in tweets)
    assert short >= 800 and short / len(tweets) >= 0.08, (short, len(tweets))  # real: a tenth under 7 words
    neutral_reports = Counter(r["lang"] for r in V2 if r["sentiment"] == "neutral" and r["severity"] != "none")
    for lang in ("en", "de", "fr", "es", "nl"):
        assert neutral_reports[lang] >= 50, neutral_reports


def test_v2_tweets_look_like_real_tweets() -> None:
    """Targets from shared REAL_TRAFFIC.md: tweets to brands carry an @handle, some a link, few emoji."""
    tweets = [r["text"] for r in V2 if r["channel"] == "twitter"]
    share = lambda pat: sum(bool(re.search(pat, t)) for t in tweets) / len(tweets)  # noqa: E731
    assert share(r"(^|\s)@\w+") >= 0.85
    assert share(r"^\s*@\w+") >= 0.6
    assert 0.05 <= share(r"https?://|t\.co/|\w\.(com|net|org)/") <= 0.3
    assert share(r"[\U0001F300-\U0001FAFF\u2600-\u27BF]") <= 0.2
    words = sorted(len(t.split()) for t in tweets)
    assert 10 <= words[len(words) // 2] <= 24, words[len(words) // 2]


def test_field_set_is_separate_and_double_labelled() -> None:
    assert len(FIELD) >= 800, len(FIELD)
    corpus_keys = {norm(r["text"]) for r in CORPUS + CHALLENGE}
    assert not [r["id"] for r in FIELD if norm(r["text"]) in corpus_keys]
    second_ids = {r["id"] for r in SECOND}
    missing = [r["id"] for r in FIELD if r["id"] not in second_ids]
    assert not missing, missing[:10]


def test_second_labels_and_adjudication() -> None:
    """≥ 3,000 corpus messages labelled blind a second time; every disagreement adjudicated,
    and the files hold the adjudicated label."""
    labels = {r["id"]: r for r in CORPUS + FIELD}
    corpus_ids = {r["id"] for r in CORPUS}
    assert sum(s["id"] in corpus_ids for s in SECOND) >= 3000
    adjudicated = {(a["id"], a["head"]): a for a in ADJUDICATED}
    for s in SECOND:
        row = labels[s["id"]]
        for head in ("severity", "private_followup", "sentiment"):
            rec = adjudicated.get((s["id"], head))
            first = rec["first"] if rec else row[head]
            if first != s[head]:
                assert rec is not None and rec["second"] == s[head], (s["id"], head)
            if rec:
                assert row[head] == rec["final"], (s["id"], head)
