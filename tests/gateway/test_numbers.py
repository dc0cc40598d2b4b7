"""Evolution's createJid rules, row by row (shared/docs/evolution-messaging.md §2.1)."""

from __future__ import annotations

import pytest

from evolink.gateway.numbers import create_jid, variants


@pytest.mark.parametrize(("given", "want"), [
    ("5511987654321", "5511987654321@s.whatsapp.net"),  # BR, DDD 11 < 31: kept
    ("5531988887777", "553188887777@s.whatsapp.net"),  # BR, DDD 31 and joker 8: the 9 goes
    ("5531966667777", "5531966667777@s.whatsapp.net"),  # BR, joker 6 < 7: kept
    ("5215512345678", "525512345678@s.whatsapp.net"),  # MX 13 digits: 3rd digit dropped
    ("5491112345678", "541112345678@s.whatsapp.net"),  # AR
    ("+1 (555) 000-2222", "15550002222@s.whatsapp.net"),
    ("15550002222:12@s.whatsapp.net", "15550002222@s.whatsapp.net"),  # device suffix dropped
    ("123@lid", "123@lid"), ("status@broadcast", "status@broadcast"),
    ("120363025246125486", "120363025246125486@g.us"),  # >= 18 digits: a group
    ("120363025246125486@g.us", "120363025246125486@g.us"),
    ("5511999999999-1600000000000", "5511999999999-1600000000000@g.us"),  # old creator-time id
    ("15550002222@c.us", "15550002222@s.whatsapp.net"),
])
def test_create_jid(given: str, want: str) -> None:
    assert create_jid(given) == want


def test_variants_for_lookup_matching() -> None:
    assert variants("15550002222") == ["15550002222"]
    assert set(variants("5531988887777")) == {"5531988887777", "553188887777"}
    assert set(variants("553188887777")) == {"553188887777", "5531988887777"}
    assert set(variants("525512345678")) == {"525512345678", "5215512345678"}
