"""Login of a linked companion (a ClientPayload with ``username``).

``(username, device)`` must name a stored device whose noise key equals the handshake static key;
otherwise ``<failure reason="401"/>`` (also for a payload without ``device``, which Baileys sends
after ``requestPairingCode`` if restarted before pairing). On success the client gets
``<success t lid="<lid>:<device>@lid"/>`` and, when configured, its edge routing info.
"""

from __future__ import annotations

import logging

from evolink.sandbox.host import Host
from evolink.sandbox.store import DeviceRecord
from evolink.sandbox.transport import Link
from evolink.wire.binary import Node
from evolink.wire.proto import wa_pb2

log = logging.getLogger("evolink.sandbox.login")


async def login(host: Host, link: Link, payload: wa_pb2.ClientPayload, client_static: bytes) -> DeviceRecord | None:
    """Check the login payload; on success send ``success`` (+ edge routing) and return the device."""
    username = str(payload.username)
    record = host.store.get_device(username, payload.device) if payload.HasField("device") else None
    if record is None or record.noise_key != client_static:
        log.info("login refused", extra={"conn": link.id, "phone": username})
        link.begin_close(1000, "login failed: 401", Node("failure", {"reason": "401", "location": "sandbox"}))
        await link.wait_closed()
        return None
    host.store.mark_login(record.phone, record.device, host.clock.unix())
    return record


async def welcome(host: Host, link: Link, record: DeviceRecord) -> None:
    await link.send_node(Node("success", {"t": str(host.clock.unix()), "lid": record.lid_jid}))
    if host.config.edge_routing_info:
        await link.send_node(Node("ib", {}, [
            Node("edge_routing", {}, [Node("routing_info", {}, host.config.edge_routing_info)])
        ]))
    log.info("login", extra={"conn": link.id, "phone": record.phone, "device": record.device})
