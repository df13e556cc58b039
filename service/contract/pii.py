"""Personal data a message exposes: the *kinds* found (never the values).

Kinds, in the order they are reported:

- ``card``: 13-19 digits (spaces or dashes allowed between groups) that pass the Luhn check.
- ``email``: an address with a dotted domain.
- ``iban``: a country code, two check digits and 11-30 letters/digits that pass ISO 13616's
  mod-97 check (and the country's length, for the countries listed in :data:`IBAN_LENGTHS`).
- ``order_ref``: an order, booking, ticket or case reference: a ``#`` followed by a code with
  at least four digits, or a code with at least four digits (or a six-character booking code)
  right after a word such as *order*, *booking*, *Bestellnummer*, *commande*, *bestelling*.
- ``phone``: a number ``phonenumbers`` (Google's libphonenumber metadata) judges *valid* for
  its region: international numbers (``+44 …``) anywhere, national ones for the regions in
  :data:`PHONE_REGIONS`. Dates, times and prices are not valid numbers, and digits already
  taken by a card, IBAN or order reference are not looked at again. Only runs of digits (with
  the separators numbers use) holding seven or more digits are looked at, at most
  :data:`MAX_PHONE_WINDOWS` windows per text, and at most :data:`MAX_CANDIDATES` candidates of
  each other kind, so the cost stays bounded on a text that is a dump of numbers.

Nothing here logs or returns the matched text: the result is only ever a sorted list of kinds.
"""

from __future__ import annotations

import re
from itertools import islice

import phonenumbers

KINDS = ("card", "email", "iban", "order_ref", "phone")
#: regions whose national numbers (no leading +) are recognised; international ones always are
PHONE_REGIONS = ("GB", "US", "DE", "FR", "NL", "BE", "ES", "IT", "AT", "CH", "IE")
#: IBAN length per country (a subset of the SWIFT registry); other countries: 15-34 characters
IBAN_LENGTHS = {"AT": 20, "BE": 16, "CH": 21, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27, "GB": 22,
                "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "SE": 24}

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_REF_WORDS = (r"order|orders|booking|reservation|ticket|case|ref|reference|confirmation|pnr|tracking|parcel|"
              r"bestellung|bestellnummer|auftrag|auftragsnummer|buchung|buchungsnummer|sendung|sendungsnummer|"
              r"commande|réservation|reservation|dossier|colis|bestelling|bestelnummer|ordernummer|boeking|"
              r"boekingsnummer|zending|pedido|reserva|localizador|ordine|prenotazione")
_REF_AFTER_WORD = re.compile(
    rf"\b(?:{_REF_WORDS})\b(?:[ \t]{{0,3}}(?:no\.?|nr\.?|number|num\.?|nummer|numéro|n°|#|id|code|:)){{0,3}}"
    r"[ \t]{0,3}(?P<code>[A-Z0-9][A-Z0-9-]{3,24})\b", re.I)
_ANY_DIGIT = re.compile(r"\d")
_REF_HASH = re.compile(r"#(?P<code>[A-Za-z0-9][A-Za-z0-9-]{3,24})\b")
#: a run of digits and the separators phone numbers use; runs with >= 7 digits are phone candidates
_NUMBER_RUN = re.compile(r"[+(]?\d[\d \t\-./()]*\d\)?")
#: the matcher is slow (~0.1 ms per region and window): look at most at this many windows of this size
MAX_PHONE_WINDOWS = 16
#: candidates checked per kind (a text of 50,000 card-like numbers is not a customer message)
MAX_CANDIDATES = 256
PHONE_WINDOW_CHARS = 32


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a digit string (card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """ISO 13616: country length (where known) and mod-97 of the rearranged number equals 1."""
    iban = candidate.replace(" ", "").upper()
    want = IBAN_LENGTHS.get(iban[:2])
    if (want and len(iban) != want) or not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _is_ref_code(code: str, after_word: bool) -> bool:
    digits = sum(ch.isdigit() for ch in code)
    if digits >= 4:
        return True
    # airline-style booking codes (PNR): six letters/digits with at least one digit, after a booking word
    return after_word and len(code) == 6 and code.isalnum() and code.upper() == code and digits >= 1


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """Blank out spans already classified, so their digits are not read again as a phone number."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _phone_windows(text: str) -> list[str]:
    """Short pieces of text that may hold a phone number: number runs with >= 7 digits, long runs cut
    into overlapping windows; at most :data:`MAX_PHONE_WINDOWS` (a 1 MB digit dump costs the same as
    a tweet)."""
    windows: list[str] = []
    for m in _NUMBER_RUN.finditer(text):
        run = m.group()
        if sum(ch.isdigit() for ch in run) < 7:
            continue
        step = PHONE_WINDOW_CHARS // 2
        starts = range(0, max(1, len(run) - step), step) if len(run) > PHONE_WINDOW_CHARS else [0]
        for start in starts:
            windows.append(run[start:start + PHONE_WINDOW_CHARS])
            if len(windows) >= MAX_PHONE_WINDOWS:
                return windows
    return windows


def _has_phone(text: str) -> bool:
    leniency = phonenumbers.Leniency.VALID
    return any(next(iter(phonenumbers.PhoneNumberMatcher(window, region, leniency=leniency)), None) is not None
               for window in _phone_windows(text) for region in PHONE_REGIONS)


def detect_personal_data(text: str) -> list[str]:
    """The kinds of personal data in ``text`` (sorted, each once); ``[]`` when there is none."""
    found: set[str] = set()
    taken: list[tuple[int, int]] = []
    if "@" in text:
        for m in islice(_EMAIL.finditer(text), MAX_CANDIDATES):
            found.add("email")
            taken.append(m.span())
    if not _ANY_DIGIT.search(text):  # every other kind holds digits: most texts stop here
        return sorted(found)
    for m in islice(_IBAN.finditer(text), MAX_CANDIDATES):
        if iban_ok(m.group()):
            found.add("iban")
            taken.append(m.span())
    for m in islice(_CARD.finditer(text), MAX_CANDIDATES):
        if luhn_ok(re.sub(r"\D", "", m.group())):
            found.add("card")
            taken.append(m.span())
    for pattern, after_word in ((_REF_AFTER_WORD, True), (_REF_HASH, False)):
        for m in islice(pattern.finditer(text), MAX_CANDIDATES):
            if _is_ref_code(m.group("code"), after_word):
                found.add("order_ref")
                taken.append(m.span("code"))
    if _has_phone(_mask(text, taken)):
        found.add("phone")
    return sorted(found)
