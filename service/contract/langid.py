"""Offline language identification (py3langid's bundled model; nothing is downloaded)."""

from __future__ import annotations

import re
from functools import lru_cache

# URLs, @handles, #tags and e-mail addresses are not language evidence. The e-mail branch starts only at
# the start of a whitespace-delimited token: a bare ``\S+@\S+`` is tried from every position of a long
# token without "@" and backtracks quadratically (20k characters of "a" took 0.3 s on the event loop).
_NOISE = re.compile(r"(https?://\S+|www\.\S+|[@#]\w+|(?<!\S)\S+@\S+)")
_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)


@lru_cache(maxsize=1)
def _identifier():  # type: ignore[no-untyped-def]
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language, or ``"und"`` when there is too little text."""
    cleaned = _NOISE.sub(" ", text)
    if len(_LETTERS.findall(cleaned)) < 4:
        return "und"
    lang, _prob = _identifier().classify(cleaned)
    return str(lang)
