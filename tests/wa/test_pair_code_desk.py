"""PairingCodeDesk without a server: one code per registration connection, emitted once, never for a dead socket."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from evolink.wa.connection import Connection, ConnectionLost
from evolink.wa.events import EngineEvent, PairingCodeEvent
from evolink.wa.pair_code import InvalidPhoneNumber, PairingError, PairingUnavailable, PendingCode
from evolink.wa.pair_code_desk import PairingCodeDesk
from evolink.wire.crypto import KeyPair

PHONE = "15550001111"
OTHER = "15550002222"
TTL = 160.0


class FakeConn:
    def __init__(self) -> None:
        self.pairing: PendingCode | None = None
        self.closed = False


class Desk:
    def __init__(self) -> None:
        self.conn = FakeConn()
        self.now = 0.0
        self.requests: list[str] = []
        self.events: list[EngineEvent] = []
        self.fail: Exception | None = None
        self.close_during_request = False
        self.gate: asyncio.Event | None = None
        self.desk = PairingCodeDesk(registration_connection=self.registration, request=self.request,
                                    elapsed=lambda: self.now, emit=self.events.append)

    async def registration(self) -> Connection:
        conn: Any = self.conn
        return conn  # type: ignore[no-any-return]

    async def request(self, conn: Connection, digits: str) -> PendingCode:
        self.requests.append(digits)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        if self.close_during_request:
            self.conn.closed = True
        issued = datetime(2026, 1, 1, tzinfo=UTC)
        return PendingCode(f"CODE{len(self.requests):04d}", digits, b"ref", KeyPair.generate(), issued,
                           issued + timedelta(seconds=TTL), deadline=self.now + TTL)


def codes(events: list[EngineEvent]) -> list[str]:
    return [e.code for e in events if isinstance(e, PairingCodeEvent)]


async def test_repeat_calls_get_the_pending_code_without_a_second_hello() -> None:
    d = Desk()
    first = await d.desk.code_for("+1 555 000 1111")
    d.now = TTL - 1
    again = await d.desk.code_for(PHONE)
    assert first == again and first.phone == PHONE
    assert d.requests == [PHONE] and codes(d.events) == ["CODE0001"]  # emitted once


async def test_another_number_is_refused_while_a_code_is_pending_then_allowed_after_expiry() -> None:
    d = Desk()
    await d.desk.code_for(PHONE)
    with pytest.raises(PairingError, match="another number"):
        await d.desk.code_for(OTHER)
    d.now = TTL  # expired on the elapsed clock
    other = await d.desk.code_for(OTHER)
    assert other.code == "CODE0002" and other.phone == OTHER
    assert d.requests == [PHONE, OTHER] and codes(d.events) == ["CODE0001", "CODE0002"]


@pytest.mark.parametrize("how", ["lost", "closed"])
async def test_a_code_whose_socket_closed_during_the_request_is_never_handed_out(how: str) -> None:
    d = Desk()
    if how == "lost":
        d.fail = ConnectionLost("gone")
    else:
        d.close_during_request = True
    with pytest.raises(PairingUnavailable, match="closed during the request"):
        await d.desk.code_for(PHONE)
    assert d.events == [] and d.conn.pairing is None


async def test_bad_numbers_fail_before_anything_is_sent() -> None:
    d = Desk()
    with pytest.raises(InvalidPhoneNumber):
        await d.desk.code_for("0123")
    assert d.requests == []


async def test_concurrent_callers_share_one_request() -> None:
    d = Desk()
    d.gate = asyncio.Event()
    first = asyncio.create_task(d.desk.code_for(PHONE))
    second = asyncio.create_task(d.desk.code_for(PHONE))
    await asyncio.sleep(0)  # one loop turn: both tasks run up to their first real wait (gate or lock)
    d.gate.set()
    a, b = await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert a == b and d.requests == [PHONE] and codes(d.events) == ["CODE0001"]
