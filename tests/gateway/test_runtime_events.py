"""gateway/runtime_events.py: each engine event's lifecycle event, row by row."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from evolink.gateway import lifecycle as lc_
from evolink.gateway.lifecycle import Lifecycle
from evolink.gateway.runtime_events import LIFECYCLE_EVENTS, EventContext, bare_jid
from evolink.wa.events import (
    CloseEvent,
    CloseReason,
    ConnectingEvent,
    LoggedOutEvent,
    MessageEvent,
    OpenEvent,
    PairingCodeEvent,
    PushNameEvent,
    QrEvent,
    ReceiptEvent,
)

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


class Frozen:
    def now(self) -> datetime:
        return NOW

    def time(self) -> float:
        return NOW.timestamp()


CTX = EventContext(Frozen(), lambda: 500.0, "#198754")
QR = QrEvent("https://wa.me/settings/linked_devices#ref1,noise,ident,adv,1", 0, 6, NOW + timedelta(seconds=60))
CLOSE = CloseEvent(CloseReason.REPLACED, 440, False, "replaced")


def translate(ev: object, lc: Lifecycle | None = None) -> lc_.Event:
    return asyncio.run(LIFECYCLE_EVENTS[type(ev)](ev, lc or Lifecycle(name="a"), CTX))


@pytest.mark.parametrize(("ev", "want"), [
    (ConnectingEvent(1), lc_.EngineConnecting()),
    (OpenEvent("5511999:12@s.whatsapp.net", None, "Ana", True), lc_.Opened("5511999@s.whatsapp.net", "Ana")),
    (CLOSE, lc_.Closed(CLOSE, NOW)),
    (LoggedOutEvent("removed"), lc_.LoggedOutUpstream()),
    (PushNameEvent("Ana", "own-message"), lc_.PushNameLearned("Ana")),
])
def test_plain_rows(ev: object, want: lc_.Event) -> None:
    assert translate(ev) == want


def test_code_gets_its_life_on_the_elapsed_clock() -> None:
    ev = PairingCodeEvent("ABCD1234", "5511999", NOW - timedelta(seconds=5), NOW + timedelta(seconds=55))
    got = translate(ev)
    assert isinstance(got, lc_.CodeIssued)
    assert got.code == lc_.PairingCode("ABCD1234", "5511999", ev.issued_at, ev.expires_at,
                                       issued_elapsed=495.0, deadline_elapsed=555.0)


def test_qr_is_rendered_in_evolution_form_unless_over_the_limit() -> None:
    got = translate(QR)
    assert isinstance(got, lc_.QrShown)
    assert got.code == "ref1,noise,ident,adv" and got.base64.startswith("data:image/png;base64,")
    over = translate(QR, Lifecycle(name="a", qrcode_limit=2, qr_count=2))
    assert over == lc_.QrShown("ref1,noise,ident,adv", "", 0, QR.expires_at)  # refused: no image rendered


def test_messaging_events_are_not_lifecycle_events() -> None:
    assert MessageEvent not in LIFECYCLE_EVENTS and ReceiptEvent not in LIFECYCLE_EVENTS


def test_bare_jid() -> None:
    assert bare_jid("5511:3@s.whatsapp.net") == "5511@s.whatsapp.net"
    assert bare_jid("5511") == "5511@s.whatsapp.net"
