"""Live Noise handshake: Baileys' client (noise_client.mjs) against evolink's responder, fresh keys.

The fixed-key transcript in tests/vectors proves byte equality; this test proves the same with
random keys each run and with evolink's own certificate chain. Baileys' client is replayed in three
stages (same keys → same bytes), so no interactive pipe is needed:
1. client hello (plain and ED-routing intro) → evolink's ServerFrameReader + NoiseResponder;
2. server hello → Baileys processes it and sends client finish + transport frames;
3. evolink's transport frames (one zlib-compressed) → Baileys decodes them to the same nodes.
"""

from __future__ import annotations

import base64
import os
import time
import zlib
from typing import Any

import pytest

from evolink.wire.binary import SERVER_JID, Node, decode, encode
from evolink.wire.certs import build_cert_chain
from evolink.wire.crypto import KeyPair
from evolink.wire.frames import FrameReader, ServerFrameReader, encode_frame
from evolink.wire.noise import NoiseResponder

from .vectorlib import load_vectors, node_to_input_json, node_to_json, run_node_json

INLINE = 1 << 20
CLIENT_NODES = [
    Node("iq", {"id": "1.2-1", "to": SERVER_JID, "type": "result"}),
    Node("iq", {"id": "1.2-2", "xmlns": "encrypt", "type": "get", "to": SERVER_JID}, [Node("count")]),
    Node("ib", {}, [Node("unified_session", {"id": "12345"})]),
]
SERVER_NODES = [
    Node(
        "iq",
        {"from": SERVER_JID, "type": "set", "id": "9.9-1", "xmlns": "md"},
        [Node("pair-device", {}, [Node("ref", {}, f"2@{i}".encode() * 20) for i in range(6)])],
    ),
    Node("success", {"t": "1764312345", "lid": "987654321012345@lid"}),
    Node("stream:error", {"code": "515"}),
]


def _hex(kp: KeyPair) -> str:
    return kp.private.hex()


@pytest.mark.baileys
@pytest.mark.parametrize("routing_info", [None, os.urandom(9)], ids=["plain_intro", "ed_intro"])
def test_baileys_client_handshakes_with_evolink_responder(node_bin: str, routing_info: bytes | None) -> None:
    client_eph, client_static = KeyPair.generate(), KeyPair.generate()
    server_static, root, intermediate = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    now = int(time.time())
    cert = build_cert_chain(
        root, intermediate, server_static.public, not_before=now - 3600, not_after=now + 3600
    )
    payload = bytes.fromhex(load_vectors("noise_handshake")["client_payload"]["login_hex"])
    req: dict[str, Any] = {
        "client_ephemeral": _hex(client_eph),
        "client_static": _hex(client_static),
        "routing_info": routing_info.hex() if routing_info else None,
        "client_payload": payload.hex(),
        "root_public": root.public.hex(),
        "cert_chain": cert.hex(),
    }

    # stage 1: Baileys' first websocket message, read by evolink's server-side reader
    first = run_node_json("noise_client.mjs", req)
    # evolink's certificate chain passes a real signature check on the node side
    assert first["cert"]["intermediate_signature"] is True
    assert first["cert"]["leaf_signature"] is True
    assert first["cert"]["intermediate_issuer_serial"] == 0  # present and zero, as Baileys requires
    assert first["cert"]["leaf_key"] == server_static.public.hex()
    reader = ServerFrameReader()
    frames = reader.feed(bytes.fromhex(first["first_message"]))
    assert reader.routing_info == routing_info
    assert len(frames) == 1
    responder = NoiseResponder(server_static)
    assert responder.read_client_hello(frames[0]) == client_eph.public
    server_hello = responder.server_hello(cert)

    # stage 2: Baileys processes the server hello and finishes
    req.update(server_hello=server_hello.hex(), client_nodes=[node_to_input_json(n) for n in CLIENT_NODES])
    second = run_node_json("noise_client.mjs", req)
    assert second["first_message"] == first["first_message"]  # the replay is faithful
    client_stream = bytes.fromhex(second["client_finish_wire"]) + b"".join(
        bytes.fromhex(f) for f in second["client_frames"]
    )
    frames = FrameReader().feed(client_stream)
    finish = responder.read_client_finish(frames[0])
    assert finish.static == client_static.public
    assert finish.payload == payload
    transport = responder.transport()
    got = [decode(transport.decrypt(f)) for f in frames[1:]]
    assert [node_to_json(n, INLINE) for n in got] == [node_to_json(n, INLINE) for n in CLIENT_NODES]

    # stage 3: evolink's transport frames, one zlib-compressed, decoded by Baileys
    bodies = [encode(n) for n in SERVER_NODES]
    bodies[1] = b"\x02" + zlib.compress(bodies[1][1:])
    server_stream = b"".join(encode_frame(transport.encrypt(b)) for b in bodies)
    req.update(server_stream=base64.b64encode(server_stream).decode())
    third = run_node_json("noise_client.mjs", req)
    assert third["client_finish_wire"] == second["client_finish_wire"]
    assert third["decoded"] == [node_to_json(n, INLINE) for n in SERVER_NODES]
