"""Evolution's pure rules, row by row: createJid, the platform guessed from a message id, the
record's content flattening, reaction emoji, the schema checker's wording."""

from __future__ import annotations

import pytest

from evolink.api.evo_schema import check
from evolink.gateway import evolution_record as rec
from evolink.gateway.emoji import is_single_emoji
from evolink.gateway.jid_rules import MalformedJid, check_jid, create_jid


@pytest.mark.parametrize(("number", "jid"), [
    ("5511987654321", "5511987654321@s.whatsapp.net"),  # BR, DDD 11 < 31: the 9 stays
    ("5531988887777", "553188887777@s.whatsapp.net"),  # BR, DDD 31 and 8…: the 9 goes
    ("5531912345678", "5531912345678@s.whatsapp.net"),  # BR, DDD 31 but first digit 1: kept
    ("5215512345678", "525512345678@s.whatsapp.net"),  # MX 13 digits: 3rd digit dropped
    ("5491123456789", "541123456789@s.whatsapp.net"),  # AR 13 digits: 3rd digit dropped
    ("+1 (555) 000-2222", "15550002222@s.whatsapp.net"),
    ("15550002222:12@s.whatsapp.net", "15550002222@s.whatsapp.net"),  # device suffix removed
    ("120363025246125486", "120363025246125486@g.us"),  # 18 digits: a group
    ("5511999999999-1600000000@whatever", "5511999999999-1600000000@g.us"),  # old group ids
    ("123456@lid", "123456@lid"),
    ("status@broadcast", "status@broadcast"),
    ("abc", "@s.whatsapp.net"),
])
def test_create_jid(number: str, jid: str) -> None:
    assert create_jid(number) == jid


def test_check_jid_refuses_what_cannot_be_a_recipient() -> None:
    assert check_jid("15550002222@S.WHATSAPP.NET") == "15550002222@s.whatsapp.net"
    for bad in ("@s.whatsapp.net", "1@s.whatsapp.net", "123@g.us", "x@lid", "status@broadcast"):
        with pytest.raises(MalformedJid):
            check_jid(bad)


@pytest.mark.parametrize(("mid", "source"), [
    ("3A" + "F" * 18, "ios"), ("3EB0" + "A" * 18, "web"), ("A" * 21, "android"), ("A" * 32, "android"),
    ("3F" + "1" * 5, "desktop"), ("B" * 18, "desktop"), ("xyz", "unknown"),
])
def test_source_of(mid: str, source: str) -> None:
    assert rec.source_of(mid) == source


def test_content_flattens_extended_text_and_lifts_context() -> None:
    shown, kind, ctx = rec.content({"extendedTextMessage": {"text": "hi", "contextInfo": {"stanzaId": "X"}},
                                    "messageContextInfo": {"messageSecret": "AA=="}})
    assert shown == {"conversation": "hi", "messageContextInfo": {"messageSecret": "AA=="}}
    assert kind == "conversation" and ctx == {"stanzaId": "X"}
    assert rec.content({"messageContextInfo": {}})[1] == "unknown"
    assert rec.content({"reactionMessage": {"text": "👍"}})[1:] == ("reactionMessage", None)


@pytest.mark.parametrize(("text", "ok"), [
    ("👍", True), ("❤️", True), ("👍🏽", True), ("👨‍👩‍👧", True), ("🇧🇷", True), ("1️⃣", True),
    ("a", False), ("👍👍", False), ("", False), ("😀a", False), ("\u200d👍", False), ("👍\u200d", False),
])
def test_single_emoji(text: str, ok: bool) -> None:
    assert is_single_emoji(text) is ok


def test_schema_wording_matches_evolutions_validator() -> None:
    schema = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string"}, "n": {"type": "integer", "minimum": 1, "maximum": 3},
        "e": {"type": "boolean", "enum": [True, False]}, "l": {"type": "array", "maxItems": 1, "uniqueItems": True},
        "d": {"type": "string", "description": "custom text"}}}
    assert check(schema, {}) == ['instance requires property "a"']
    assert check(schema, {"a": "x", "n": 0}) == ["n must be greater than or equal to 1"]
    assert check(schema, {"a": "x", "n": 4}) == ["n must be less than or equal to 3"]
    assert check(schema, {"a": "x", "l": [1, 1]}) == ["l does not meet maximum length of 1", "l contains duplicate item"]
    assert check(schema, {"a": "x", "d": 5}) == ["custom text"]
    assert check(schema, {"a": "x", "e": "yes"}) == ["e is not of a type(s) boolean"]
    assert check(schema, {"a": True}) == ["a is not of a type(s) string"]
