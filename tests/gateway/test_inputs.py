"""Issue 10 item 9: `number` is ASCII digits only; instance names are NFKC within a documented set."""

from __future__ import annotations

from pathlib import Path

import pytest
from gw_fakes import FakeHub
from gw_helpers import create_instance, make_settings, running_gateway

from evolink.gateway.inputs import InvalidName, InvalidNumber, instance_name, lookup_name, phone_number
from evolink.wa.pair_code import InvalidPhoneNumber, normalize_phone

ARABIC_INDIC = "\u0665\u0665\u0661\u0661\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669"  # ٥٥١١٩٩٩٩٩٩٩٩٩
FULL_WIDTH = "\uff15\uff15\uff11\uff11\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19\uff19"


@pytest.mark.parametrize(("typed", "digits"), [
    ("5511999999999", "5511999999999"), ("+55 11 99999-9999", "5511999999999"),
    ("+1 (555) 000-1111", "15550001111"), ("5511999999999@s.whatsapp.net", "5511999999999"),
    ("5511999999999@c.us", "5511999999999"), (" 5511999999999 ", "5511999999999"),
])
def test_phone_numbers_accepted(typed: str, digits: str) -> None:
    assert phone_number(typed) == digits


@pytest.mark.parametrize(("typed", "why"), [
    (ARABIC_INDIC, "ASCII digits"), (FULL_WIDTH, "ASCII digits"), ("55119999\u0669\u0669999", "ASCII digits"),
    ("-5511999999999", "not negative"), ("- 5511999999999", "not negative"), ("+-5511999999999", "ASCII digits"),
    ("5511x99999999", "ASCII digits"), ("5511999999999@g.us", "ASCII digits"), ("\u00b2\u00b3123456789", "ASCII"),
    ("123456", "too few digits"), ("05511999999999", "no leading 0"), ("1234567890123456", "more than 15"),
    ("++5511999999999", "ASCII digits"),
])
def test_phone_numbers_refused(typed: str, why: str) -> None:
    with pytest.raises(InvalidNumber, match=why):
        phone_number(typed)


def test_engine_keeps_ascii_digits_only() -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone(ARABIC_INDIC)  # str.isdigit() took these for digits
    assert normalize_phone("+55 (11) 99999-9999") == "5511999999999"


@pytest.mark.parametrize(("typed", "stored"), [
    ("loja-1", "loja-1"), ("São Paulo", "São Paulo"), ("Sa\u0303o", "São"), ("\uff54\uff45\uff53\uff54", "test"),
    ("a.b@c+d#(e)_f", "a.b@c+d#(e)_f"), ("Zoë Ærøskøbing", "Zoë Ærøskøbing"), ("x" * 255, "x" * 255),
])
def test_instance_names_accepted_in_nfkc(typed: str, stored: str) -> None:
    assert instance_name(typed) == stored


@pytest.mark.parametrize(("typed", "shown"), [
    ("a\u200bb", "U+200B"),  # zero-width space (format)
    ("a\u202eb", "U+202E"),  # right-to-left override
    ("a\u2066b", "U+2066"),  # left-to-right isolate
    ("a\x07b", "U+0007"), ("a\x7fb", "U+007F"), ("a/b", "U+002F"), ("a\\b", "U+005C"),
    ("\u0440\u0430\u0443\u0440\u0430l", "U+0430"),  # Cyrillic letters that look Latin
    ("pay\u0440al", "U+0440"), ("\u0131nstance", "U+0131"), ("a\u00d7b", "U+00D7"), ("\U0001f600", "U+1F600"),
    ("a\u00a0b", None),  # NBSP is NFKC space: accepted as a plain space
])
def test_instance_names_refused(typed: str, shown: str | None) -> None:
    if shown is None:
        assert instance_name(typed) == "a b"
        return
    with pytest.raises(InvalidName, match=shown.replace("+", r"\+")):
        instance_name(typed)


@pytest.mark.parametrize("typed", ["", " a", "a ", "x" * 256])
def test_instance_names_refused_by_shape(typed: str) -> None:
    with pytest.raises(InvalidName):
        instance_name(typed)


def test_lookup_is_nfkc_only() -> None:
    assert lookup_name("\uff54\uff45\uff53\uff54") == "test" and lookup_name("a\u200bb") == "a\u200bb"


async def test_api_refuses_loose_input_in_evolutions_envelope(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path), engine_factory=FakeHub().factory) as (client, _app):
        for body, needle in (({"number": ARABIC_INDIC}, "ASCII digits"), ({"number": "-5511999999999"}, "negative"),
                             ({"instanceName": "a\u202eb"}, "U+202E"), ({"instanceName": "\u0440ay"}, "U+0440")):
            resp = await client.post("/instance/create", json={"instanceName": "ok", "integration": "WHATSAPP-BAILEYS",
                                                               **body})
            assert resp.status_code == 400, resp.text
            data = resp.json()
            assert data["status"] == 400 and data["error"] == "Bad Request"
            assert needle in data["response"]["message"][0][0]
        assert (await client.get("/instance/fetchInstances")).json() == []  # nothing stored

        made = await create_instance(client, "\uff54\uff45\uff53\uff54")  # full-width "test"
        assert made["instance"]["instanceName"] == "test"
        assert (await client.get("/instance/connectionState/test")).status_code == 200
        # the name as typed still finds it
        assert (await client.get("/instance/connectionState/\uff54\uff45\uff53\uff54")).status_code == 200
        resp = await client.get("/instance/fetchInstances", params={"instanceName": "\uff54\uff45\uff53\uff54"})
        assert [r["name"] for r in resp.json()] == ["test"]
        # and the same name in another form is the same name
        again = await client.post("/instance/create", json={"instanceName": "test", "integration": "WHATSAPP-BAILEYS"})
        assert again.status_code == 403

        answer = (await client.get("/instance/connect/test", params={"number": FULL_WIDTH})).json()
        assert answer["error"] is True and "ASCII digits" in answer["message"]
