"""Engine events -> lifecycle events: the translation table of `gateway/runtime.py`.

One entry per engine event that is part of the lifecycle (connecting, QR, pairing code, open,
close, logged out, push name); events not in `LIFECYCLE_EVENTS` (messages, receipts, calls …) go to
the messaging pipeline instead. Each translator reads only the event, the current record and the
facts passed in `EventContext`; only the QR one does work (it renders the PNG off the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from evolink.clock import Clock
from evolink.gateway import lifecycle as lc_
from evolink.gateway.lifecycle import Lifecycle
from evolink.gateway.qr import evolution_code, render_png_data_url
from evolink.gateway.runtime_effects import pairing_code
from evolink.wa.events import (
    CloseEvent,
    ConnectingEvent,
    LoggedOutEvent,
    OpenEvent,
    PairingCodeEvent,
    PushNameEvent,
    QrEvent,
)

__all__ = ["LIFECYCLE_EVENTS", "EventContext", "bare_jid"]


@dataclass(frozen=True, slots=True)
class EventContext:
    """What translators need beyond the event and the record."""

    clock: Clock
    elapsed: Callable[[], float]
    qrcode_color: str


Translate = Callable[[Any, Lifecycle, EventContext], Coroutine[Any, Any, lc_.Event]]


def bare_jid(jid: str) -> str:
    """`5511...:12@s.whatsapp.net` -> `5511...@s.whatsapp.net` (Evolution's `wuid`)."""
    user, _, server = jid.partition("@")
    return f"{user.split(':', 1)[0]}@{server or 's.whatsapp.net'}"


async def _connecting(_ev: ConnectingEvent, _lc: Lifecycle, _ctx: EventContext) -> lc_.Event:
    return lc_.EngineConnecting()


async def _qr(ev: QrEvent, lc: Lifecycle, ctx: EventContext) -> lc_.Event:
    code = evolution_code(ev.qr)  # the PNG encodes `code` itself, as Evolution's does (phones accept it)
    if lc.qr_count >= lc.qrcode_limit:
        return lc_.QrShown(code, "", ev.index, ev.expires_at)  # refused by the table: no image needed
    png = await asyncio.to_thread(render_png_data_url, code, ctx.qrcode_color)
    return lc_.QrShown(code, png, ev.index, ev.expires_at)


async def _code(ev: PairingCodeEvent, _lc: Lifecycle, ctx: EventContext) -> lc_.Event:
    return lc_.CodeIssued(pairing_code(ev, ctx.clock, ctx.elapsed))


async def _open(ev: OpenEvent, _lc: Lifecycle, _ctx: EventContext) -> lc_.Event:
    return lc_.Opened(bare_jid(ev.jid), ev.push_name)


async def _close(ev: CloseEvent, _lc: Lifecycle, ctx: EventContext) -> lc_.Event:
    return lc_.Closed(ev, ctx.clock.now())


async def _logged_out(_ev: LoggedOutEvent, _lc: Lifecycle, _ctx: EventContext) -> lc_.Event:
    return lc_.LoggedOutUpstream()


async def _push_name(ev: PushNameEvent, _lc: Lifecycle, _ctx: EventContext) -> lc_.Event:
    return lc_.PushNameLearned(ev.name)  # the account told its name: fetchInstances' profileName


LIFECYCLE_EVENTS: dict[type, Translate] = {
    ConnectingEvent: _connecting, QrEvent: _qr, PairingCodeEvent: _code, OpenEvent: _open, CloseEvent: _close,
    LoggedOutEvent: _logged_out, PushNameEvent: _push_name,
}
