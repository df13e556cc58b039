"""Exact and near-duplicate detection for the corpus, the challenge and the field set.

Near-duplicates are pairs of texts whose character 5-gram sets have a Jaccard similarity of
at least 0.6 (texts of 25+ normalised characters). The pairwise product is computed in row
blocks so memory stays bounded for corpora of tens of thousands of messages.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterator, Sequence

import numpy as np


def norm(text: str) -> str:
    """Casefolded, NFKC-normalised text with every run of non-word characters as one space."""
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"\W+", " ", text).strip()


def shingles(texts: Sequence[str]):  # type: ignore[no-untyped-def]
    """Binary sparse matrix of hashed character 5-grams of the normalised texts."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vec = HashingVectorizer(analyzer="char", ngram_range=(5, 5), n_features=2**22, binary=True, norm=None,
                            alternate_sign=False, preprocessor=norm, dtype=np.float32)
    return vec.transform(texts).tocsr()


def near_duplicate_pairs(texts: Sequence[str], groups: Sequence[str] | None = None, threshold: float = 0.6,
                         block: int = 1024) -> Iterator[tuple[int, int, float]]:
    """Yield (i, j, jaccard) with i < j and jaccard >= threshold; with ``groups``, only pairs
    whose groups differ (e.g. different splits, or field set vs corpus)."""
    x = shingles(texts)
    sizes = np.asarray(x.sum(axis=1)).ravel()
    xt = x.T.tocsc()
    grp = None if groups is None else np.asarray(groups)
    for start in range(0, x.shape[0], block):
        inter = (x[start:start + block] @ xt).tocoo()
        i, j, common = inter.row + start, inter.col, inter.data
        keep = i < j
        if grp is not None:
            keep &= grp[i] != grp[j]
        i, j, common = i[keep], j[keep], common[keep]
        jac = common / (sizes[i] + sizes[j] - common)
        for a, b, v in zip(i[jac >= threshold], j[jac >= threshold], jac[jac >= threshold]):
            yield int(a), int(b), float(v)
