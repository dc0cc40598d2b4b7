"""The message router's core: per-device queues, live delivery, login replay, acknowledgements.

The server never decrypts; it moves stanzas between devices. Every stanza routed to a device is
first kept in that device's queue (SQLite, so ``--data`` survives restarts) and sent at once if
the device is online; it stays queued until the device acknowledges it — a ``<receipt id>`` (any
type) or ``<ack class="message" id>`` for messages, ``<ack class="receipt">`` for receipts. At every
login the whole queue is replayed in order with ``offline="1"``, then ``<ib><offline count=N/>``
is sent (always, even with N=0: it unblocks Baileys' event buffer at once instead of after 30 s).
So delivery is at-least-once, and exactly-once after the device's acknowledgement.

Routing decisions live in ``messages.py`` (``<message>``) and ``receipts.py`` (``<receipt>``);
device 0 (the simulated phone) has no socket: what is routed to it goes to ``phone_inbox``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from evolink.sandbox import messages, receipts
from evolink.sandbox.services import Services
from evolink.sandbox.stanzas import new_id
from evolink.wire import binary
from evolink.wire.binary import Node

if TYPE_CHECKING:
    from evolink.sandbox.connection import Connection

log = logging.getLogger("evolink.sandbox.router")

REPLAY_BATCH = 200


class Router:
    def __init__(self, services: Services, live: Callable[[str, int], Connection | None],
                 phone_inbox: Callable[[str, Node], None], phone_top_up: Callable[[str], None],
                 everyone: Callable[[], Iterable[Connection]] = tuple) -> None:
        self.sv = services
        self._live = live
        self._everyone = everyone
        self._phone_inbox = phone_inbox
        self._phone_top_up = phone_top_up
        services.notify = self.push
        services.deliver = self.deliver_notification
        self.routed = 0  # stanzas handed to devices (queued or live)

    # -------------------------------------------------------------------------- inbound
    def on_message(self, conn: Connection, node: Node) -> Node:
        """A ``<message>`` from a logged-in device: route it; returns the server ack to send back."""
        assert conn.phone is not None and conn.device is not None
        return messages.route(self, conn.phone, conn.device, node)

    def on_receipt(self, conn: Connection, node: Node) -> None:
        assert conn.phone is not None and conn.device is not None
        receipts.route(self, conn.phone, conn.device, node)

    def on_ack(self, conn: Connection, node: Node) -> None:
        """``<ack class=… id=…>`` from a device: the stanza it names leaves that device's queue."""
        assert conn.phone is not None and conn.device is not None
        sid = node.attrs.get("id")
        cls = node.attrs.get("class")
        if not sid:
            return
        if cls == "message":
            self.sv.routing.acknowledge(conn.phone, conn.device, "message", sid, None)
        elif cls == "receipt":
            peer = receipts.peer_key(node.attrs.get("to", ""), node.attrs.get("participant"))
            self.sv.routing.acknowledge(conn.phone, conn.device, "receipt", sid, peer)
        elif cls == "notification":
            self.sv.routing.acknowledge(conn.phone, conn.device, "notification", sid, None)

    # ------------------------------------------------------------------------- delivery
    def deliver(self, phone: str, device: int, node: Node, *, tag: str, peer: str) -> None:
        """Queue ``node`` for (phone, device) until it acknowledges, and send it now if online."""
        self.routed += 1
        if device == 0:
            self._phone_inbox(phone, node)  # the simulated phone takes it at once
            return
        sid = node.attrs.get("id", "")
        self.sv.routing.enqueue(phone, device, tag, sid, peer, binary.encode(node))
        conn = self._live(phone, device)
        if conn is not None and conn.deliverable:
            conn.push(node)

    def deliver_notification(self, phone: str, device: int, node: Node) -> None:
        """A durable notification (e.g. ``w:gp2``) to a companion device; the simulated phone needs none."""
        if device:
            self.deliver(phone, device, node, tag="notification", peer="")

    def push(self, phone: str, device: int, node: Node) -> None:
        """Send a notification to a device if it is online (not queued: it is re-derivable).

        The simulated phone answers the only notification it gets (pre-keys low) by topping up.
        """
        if device == 0:
            self._phone_top_up(phone)
            return
        conn = self._live(phone, device)
        if conn is not None and conn.deliverable:
            conn.push(node)

    async def replay(self, conn: Connection) -> None:
        """After login: the device's whole queue in order (``offline="1"``), then ``<ib><offline>``."""
        assert conn.phone is not None and conn.device is not None
        last, count = 0, 0
        while True:
            rows = self.sv.routing.queued(conn.phone, conn.device, after=last, limit=REPLAY_BATCH)
            if not rows:
                break
            for row in rows:
                node = binary.decode(row.node)
                node.attrs["offline"] = "1"
                await conn.push_paced(node)
                count += 1
            last = rows[-1].seq
        # No await between the last (empty) read and this flag: nothing routed meanwhile is missed.
        conn.deliverable = True
        conn.push(Node("ib", {}, [Node("offline", {"count": str(count)})]))
        if count:
            log.info("offline queue replayed", extra={"conn": conn.id, "count": count})

    def device_linked(self, phone: str, device: int) -> None:
        """A companion linked: every online device is told the account's device list changed."""
        log.info("device joined the account", extra={"phone": phone, "device": device})
        self._devices_changed(phone, device)

    def device_removed(self, phone: str, device: int) -> None:
        self.sv.routing.forget_device(phone, device)
        self._devices_changed(phone, device)

    def _devices_changed(self, phone: str, device: int) -> None:
        """``<notification type="devices"><update><device jid/>…`` to every other online device.

        ``update`` makes Baileys drop its cached list (keyed by the user of each device JID, so both
        namespaces are named) and whatsmeow re-query; a notification with no ``<device>`` would be
        ignored. Sent live only, to all online devices (the sandbox does not track contacts).
        """
        acct = self.sv.directory.account(phone)
        if acct is None:
            return
        dev = acct.at(device)
        node = Node("notification", {"from": acct.user_jid, "type": "devices", "id": "",
                                     "t": str(self.sv.host.clock.unix())},
                    [Node("update", {"device_hash": "2:" + stanzas_hash(phone, device)}, [
                        Node("device", {"jid": dev.jid(False)}), Node("device", {"jid": dev.jid(True)})])])
        for conn in list(self._everyone()):
            if conn.deliverable and (conn.phone, conn.device) != (phone, device):
                conn.push(Node(node.tag, {**node.attrs, "id": new_id()}, node.content))


def stanzas_hash(phone: str, device: int) -> str:
    """An opaque device-list hash for ``device_hash`` (clients only compare it)."""
    return hashlib.sha256(f"{phone}:{device}".encode()).hexdigest()[:8]
