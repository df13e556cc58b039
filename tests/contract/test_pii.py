"""Personal-data kinds: what must be found, and the look-alikes that must not be (dates, prices,
times, versions, flight numbers, checksum failures)."""

from __future__ import annotations

import pytest

from service.contract.pii import KINDS, detect_personal_data, iban_ok, luhn_ok


@pytest.mark.parametrize(("text", "kinds"), [
    ("call me on 07911 123456 please", ["phone"]),
    ("my number is +44 7911 123456", ["phone"]),
    ("ruf mich an: 0171 2345678", ["phone"]),
    ("appelez-moi au +33 6 12 34 56 78", ["phone"]),
    ("bel me op 06-12345678", ["phone"]),
    ("(212) 555-0147 is my cell", ["phone"]),
    ("mail me at jane.doe@example.co.uk", ["email"]),
    ("charged twice on 4111 1111 1111 1111!!", ["card"]),
    ("card 5500-0000-0000-0004 declined", ["card"]),
    ("refund to DE89 3704 0044 0532 0130 00 please", ["iban"]),
    ("IBAN GB29NWBK60161331926819", ["iban"]),
    ("order #MN-55821 never came", ["order_ref"]),
    ("Mijn pakket, ordernummer A7K-22913, is zoek", ["order_ref"]),
    ("booking ref QX7P2K was cancelled", ["order_ref"]),
    ("Bestellnummer 4402-1187 fehlt", ["order_ref"]),
    ("commande n° 88231 jamais livrée, écrivez à paul@mail.fr ou 06 12 34 56 78",
     ["email", "order_ref", "phone"]),
])
def test_finds_the_kind(text: str, kinds: list[str]) -> None:
    assert detect_personal_data(text) == kinds


@pytest.mark.parametrize("text", [
    "flight on 2026-03-07 at 10:30 was delayed",
    "since 12/03/2026 I am waiting",
    "I paid 1,299.00 EUR for this",
    "paid 129.99 on 03/04/2025 at 14:05",
    "version 2.13.0 crashes on start",
    "Flight AF 2231 delayed 3 hours",
    "my order is late since monday",
    "booking was great, thanks!",
    "card 4111 1111 1111 1112 (fails Luhn)",
    "iban DE89370400440532013001 (bad check digits)",
    "1234567890123",
    "@SkyWaysAir 3rd time asking, 9 days now",
    "room 1204, floor 12, 24/7 service",
    "#fail #neveragain",
    "",
])
def test_look_alikes_are_not_personal_data(text: str) -> None:
    assert detect_personal_data(text) == []


def test_values_are_never_returned_and_kinds_are_sorted_once() -> None:
    text = "a@b.co c@d.org 07911 123456 07922 654321 order #AB-12345"
    got = detect_personal_data(text)
    assert got == sorted(set(got)) and set(got) <= set(KINDS)
    assert not any(ch.isdigit() or "@" in ch for ch in "".join(got))


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("NL91ABNA0417164300") and not iban_ok("NL91ABNA0417164301")
    assert not iban_ok("DE8937040044053201300")  # one character short for Germany
