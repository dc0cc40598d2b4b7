"""SessionLoop without a server: the close decision row by row, and the loop talking only through its hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from evolink.clock.base import SystemClock
from evolink.wa.config import EngineConfig
from evolink.wa.connection import Connection
from evolink.wa.creds import Creds, CredsError
from evolink.wa.events import CloseEvent, CloseReason, ConnectingEvent, ConnectionState, EngineEvent
from evolink.wa.session_loop import MAX_IMMEDIATE_RESTARTS, SessionHooks, SessionLoop, Step, next_step
from evolink.wa.stream_errors import Disconnect, for_code
from evolink.wire.binary import Node

RESTART = for_code(515)
LOGGED_OUT = for_code(401)
REPLACED = for_code(440)
TIMEOUT = for_code(408)


@pytest.mark.parametrize(("d", "streak", "exhausted", "step"), [
    (RESTART, 0, False, Step.NOW),
    (RESTART, MAX_IMMEDIATE_RESTARTS - 1, False, Step.NOW),
    (RESTART, MAX_IMMEDIATE_RESTARTS, False, Step.BACKOFF),  # a 515 loop falls back to the backoff
    (RESTART, MAX_IMMEDIATE_RESTARTS, True, Step.STOP),  # …which a bounded policy ends
    (RESTART, 0, True, Step.NOW),  # within the streak the policy's budget is not spent
    (TIMEOUT, 0, False, Step.BACKOFF),
    (TIMEOUT, 0, True, Step.STOP),
    (LOGGED_OUT, 0, False, Step.STOP),
    (REPLACED, 0, False, Step.STOP),
    (REPLACED, MAX_IMMEDIATE_RESTARTS, True, Step.STOP),
])
def test_next_step_row_by_row(d: Disconnect, streak: int, exhausted: bool, step: Step) -> None:
    assert next_step(d, streak, exhausted) is step


class Host:
    """Records what the loop reports; the creds load answers from a script."""

    def __init__(self, loads: list[Exception | Creds]) -> None:
        self.loads = loads
        self.states: list[ConnectionState] = []
        self.events: list[EngineEvent] = []
        self.wiped: list[str] = []
        self.changes = 0
        self.closed = asyncio.Event()  # any close
        self.done = asyncio.Event()  # a close that does not reconnect

    async def load_creds(self) -> Creds:
        item = self.loads.pop(0) if self.loads else CredsError("script exhausted")
        if isinstance(item, Exception):
            raise item
        return item

    def emit(self, event: EngineEvent) -> None:
        self.events.append(event)
        if isinstance(event, CloseEvent):
            self.closed.set()
            if not event.will_reconnect:
                self.done.set()

    async def wipe_creds(self, message: str) -> None:
        self.wiped.append(message)

    def set_connection(self, conn: Connection | None) -> None:
        raise AssertionError("no socket is opened when the creds cannot be loaded")

    def connection_changed(self) -> None:
        self.changes += 1

    def dispatch(self, conn: Connection, node: Node) -> None:
        raise AssertionError("no stanza without a socket")

    def hooks(self) -> SessionHooks:
        return SessionHooks(set_state=self.states.append, set_connection=self.set_connection,
                            connection_changed=self.connection_changed, emit=self.emit,
                            load_creds=self.load_creds, wipe_creds=self.wipe_creds, dispatch=self.dispatch)


def closes(events: list[Any]) -> list[CloseEvent]:
    return [e for e in events if isinstance(e, CloseEvent)]


async def test_unreadable_creds_close_for_good_through_the_hooks() -> None:
    host = Host([CredsError("bad json")])
    loop = SessionLoop(EngineConfig(), SystemClock(), host.hooks())
    loop.start()
    await asyncio.wait_for(host.done.wait(), 5)
    assert loop.task is not None
    await asyncio.wait_for(loop.task, 5)
    assert not loop.running
    assert [type(e) for e in host.events] == [ConnectingEvent, CloseEvent]
    close = closes(host.events)[0]
    assert close.reason is CloseReason.BAD_SESSION and not close.will_reconnect
    assert "stored creds unreadable" in close.message
    # CONNECTING, CLOSE after the attempt, CLOSE again when the loop ends
    assert host.states == [ConnectionState.CONNECTING, ConnectionState.CLOSE, ConnectionState.CLOSE]
    assert loop.connections == 0 and loop.last_reconnect_delay is None
    assert loop.last_disconnect is not None and loop.last_disconnect.reason is CloseReason.BAD_SESSION
    assert host.wiped == []


async def test_a_failing_store_is_retried_by_the_backoff_until_exhausted() -> None:
    host = Host([RuntimeError("db down"), RuntimeError("db down"), RuntimeError("db down")])
    cfg = EngineConfig(reconnect_base=0.001, reconnect_cap=0.002, reconnect_max_attempts=2)
    loop = SessionLoop(cfg, SystemClock(), host.hooks())
    loop.start()
    await asyncio.wait_for(host.done.wait(), 5)
    assert [e.attempt for e in host.events if isinstance(e, ConnectingEvent)] == [1, 2, 3]
    assert [c.will_reconnect for c in closes(host.events)] == [True, True, False]
    assert all("creds store failed" in c.message for c in closes(host.events))
    assert loop.failures == 2


async def test_stop_cancels_a_waiting_loop_and_reports_it_was_running() -> None:
    host = Host([RuntimeError("db down")])
    cfg = EngineConfig(reconnect_base=30.0, reconnect_cap=60.0)  # the loop sleeps in its backoff
    loop = SessionLoop(cfg, SystemClock(), host.hooks())
    loop.start()
    loop.start()  # idempotent while running: still one task
    first = loop.task
    await asyncio.wait_for(host.closed.wait(), 5)
    assert loop.task is first and loop.running
    assert not await loop.wait_ended(0.01)  # still waiting to reconnect
    assert await loop.stop()
    assert not loop.running and loop.task is None
    assert host.states[-1] is ConnectionState.CLOSE
    assert not await loop.stop()  # nothing left to stop
    assert await loop.wait_ended(0.01)
