"""evolink.wire.noise / frames / certs / proto against a Noise transcript made by Baileys' client.

The transcript (tests/vectors/noise_handshake.json) is Baileys' ``makeNoiseHandler`` talking to an
independent node:crypto responder, all keys fixed. With the same keys, evolink's initiator must
produce Baileys' client messages byte for byte and read the server's; evolink's responder must
produce the server hello byte for byte and read Baileys' client finish; transport frames must match
in both directions.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from evolink.wire import proto
from evolink.wire.binary import decode
from evolink.wire.certs import verify_cert_chain
from evolink.wire.crypto import KeyPair, verify
from evolink.wire.errors import NoiseError
from evolink.wire.frames import (
    INTRO_HEADER,
    FrameReader,
    ServerFrameReader,
    client_intro,
    encode_frame,
)
from evolink.wire.noise import PROTOCOL_NAME, NoiseInitiator, NoiseResponder, Transport

from .vectorlib import load_vectors, node_to_json, pattern_bytes

V = load_vectors("noise_handshake")
HS = V["handshake"]
KEYS = V["keys"]
C2S: list[dict[str, Any]] = V["transport"]["client_to_server"]
S2C: list[dict[str, Any]] = V["transport"]["server_to_client"]
INLINE = 1 << 20


def _kp(name: str) -> KeyPair:
    kp = KeyPair.from_private(bytes.fromhex(KEYS[name]["private"]))
    assert kp.public.hex() == KEYS[name]["public"], f"{name}: public key derivation differs from node"
    return kp


def _h(name: str) -> bytes:
    return bytes.fromhex(HS[name])


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


def _initiator_through_finish() -> tuple[NoiseInitiator, bytes]:
    init = NoiseInitiator(_kp("client_static"), ephemeral=_kp("client_ephemeral"))
    assert init.client_hello() == _h("client_hello_hex")
    init.read_server_hello(_h("server_hello_hex"))
    finish = init.client_finish(bytes.fromhex(V["client_payload"]["registration_hex"]))
    return init, finish


def _responder_through_finish() -> NoiseResponder:
    resp = NoiseResponder(_kp("server_static"), ephemeral=_kp("server_ephemeral"))
    resp.read_client_hello(_h("client_hello_hex"))
    resp.server_hello(bytes.fromhex(V["cert_chain"]["payload"]))
    resp.read_client_finish(_h("client_finish_hex"))
    return resp


def test_constants_match_baileys() -> None:
    assert PROTOCOL_NAME.hex() == V["protocol_name_hex"]
    assert INTRO_HEADER.hex() == V["prologue_hex"] == V["intro"]["plain_hex"]


def test_initiator_reproduces_baileys_client() -> None:
    init = NoiseInitiator(_kp("client_static"), ephemeral=_kp("client_ephemeral"))
    hello = init.client_hello()
    assert hello.hex() == HS["client_hello_hex"]
    # Baileys' first websocket message = intro header + framed hello
    assert (client_intro() + encode_frame(hello)).hex() == HS["client_hello_wire_hex"]

    server = init.read_server_hello(_h("server_hello_hex"))
    assert server.static.hex() == KEYS["server_static"]["public"]
    assert server.cert_payload.hex() == V["cert_chain"]["payload"]

    finish = init.client_finish(bytes.fromhex(V["client_payload"]["registration_hex"]))
    assert finish.hex() == HS["client_finish_hex"]
    assert encode_frame(finish).hex() == HS["client_finish_wire_hex"]
    assert init.handshake_hash.hex() == HS["handshake_hash_hex"]


def test_responder_reproduces_server_and_reads_baileys_finish() -> None:
    resp = NoiseResponder(_kp("server_static"), ephemeral=_kp("server_ephemeral"))
    assert resp.read_client_hello(_h("client_hello_hex")).hex() == KEYS["client_ephemeral"]["public"]
    hello = resp.server_hello(bytes.fromhex(V["cert_chain"]["payload"]))
    assert hello.hex() == HS["server_hello_hex"]
    finish = resp.read_client_finish(_h("client_finish_hex"))
    assert finish.static.hex() == KEYS["client_static"]["public"]
    assert finish.payload.hex() == V["client_payload"]["registration_hex"]
    assert resp.handshake_hash.hex() == HS["handshake_hash_hex"]


def test_initiator_transport_matches_baileys() -> None:
    init, _ = _initiator_through_finish()
    t = init.transport()
    for i, frame in enumerate(C2S):
        assert t.encrypt(_b64(frame["plaintext_b64"])) == _b64(frame["ciphertext_b64"]), f"c2s frame {i}"
    for i, frame in enumerate(S2C):
        assert t.decrypt(_b64(frame["ciphertext_b64"])) == _b64(frame["plaintext_b64"]), f"s2c frame {i}"


def test_responder_transport_matches_baileys() -> None:
    t = _responder_through_finish().transport()
    for i, frame in enumerate(S2C):
        assert t.encrypt(_b64(frame["plaintext_b64"])) == _b64(frame["ciphertext_b64"]), f"s2c frame {i}"
    for i, frame in enumerate(C2S):
        assert t.decrypt(_b64(frame["ciphertext_b64"])) == _b64(frame["plaintext_b64"]), f"c2s frame {i}"


def test_transport_keys_split_like_baileys() -> None:
    """Transport built straight from the recorded split keys behaves like the handshake's."""
    client = Transport(_h("client_write_key_hex"), _h("client_read_key_hex"))
    assert client.encrypt(_b64(C2S[0]["plaintext_b64"])) == _b64(C2S[0]["ciphertext_b64"])
    assert client.decrypt(_b64(S2C[0]["ciphertext_b64"])) == _b64(S2C[0]["plaintext_b64"])


def test_client_frames_and_nodes_match_baileys() -> None:
    """Baileys' encodeFrame output = our framing; the framed plaintext decodes to the sent node."""
    for frame in C2S:
        assert encode_frame(_b64(frame["ciphertext_b64"])) == _b64(frame["frame_b64"])
        assert node_to_json(decode(_b64(frame["plaintext_b64"])), INLINE) == frame["node"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64, 1 << 20])
def test_server_stream_reassembly_and_decode(chunk: int) -> None:
    """What Baileys decoded from the server stream, evolink decodes too (incl. a zlib frame)."""
    stream = _b64(V["transport"]["server_stream_b64"])
    reader = FrameReader()
    frames: list[bytes] = []
    for off in range(0, len(stream), chunk):
        frames.extend(reader.feed(stream[off : off + chunk]))
    assert frames == [_b64(f["ciphertext_b64"]) for f in S2C]
    init, _ = _initiator_through_finish()
    t = init.transport()
    for frame, expected in zip(frames, S2C, strict=True):
        assert node_to_json(decode(t.decrypt(frame)), INLINE) == expected["baileys_decoded"]


def test_corrupted_frame_advances_read_counter_like_baileys() -> None:
    bad = V["transport"]["corrupted_frame"]
    t = _responder_through_finish().transport()
    # replay the server's writes so the counter reaches the corrupted frame's slot
    for frame in S2C:
        t.encrypt(_b64(frame["plaintext_b64"]))
    assert t.encrypt(_b64(bad["bad_plaintext_b64"])) != _b64(bad["bad_ciphertext_b64"])  # it was flipped
    client = _initiator_through_finish()[0].transport()
    for frame in S2C:
        client.decrypt(_b64(frame["ciphertext_b64"]))
    with pytest.raises(NoiseError):
        client.decrypt(_b64(bad["bad_ciphertext_b64"]))
    after = client.decrypt(_b64(bad["next_ciphertext_b64"]))
    assert after == _b64(bad["next_plaintext_b64"])
    assert node_to_json(decode(after), INLINE) == bad["baileys_next_decoded"]


@pytest.mark.parametrize("chunk", [1, 2, 4, 7, 11, 1 << 20])
def test_server_reader_accepts_baileys_intros(chunk: int) -> None:
    intro = V["intro"]
    routing = bytes.fromhex(intro["routing_info_hex"])
    ed_stream = bytes.fromhex(intro["ed_first_message_hex"]) + bytes.fromhex(intro["ed_second_message_hex"])
    assert client_intro(routing) + encode_frame(_h("client_hello_hex")) == bytes.fromhex(
        intro["ed_first_message_hex"]
    )
    for stream, want_routing in (
        (ed_stream, routing),
        (bytes.fromhex(HS["client_hello_wire_hex"]) + bytes.fromhex(HS["client_finish_wire_hex"]), None),
    ):
        reader = ServerFrameReader()
        frames: list[bytes] = []
        for off in range(0, len(stream), chunk):
            frames.extend(reader.feed(stream[off : off + chunk]))
        assert reader.routing_info == want_routing
        assert frames[0] == _h("client_hello_hex")
        assert len(frames) == 2


def test_framing_matches_baileys_encode_frame() -> None:
    """Sizes up to the 2^24-1 maximum; the first message carries the intro header like Baileys'."""
    for f in V["framing"]:
        p = f["pattern"]
        wire = encode_frame(pattern_bytes(p["length"], p["mul"], p["add"]))
        if f["with_intro"]:
            wire = client_intro() + wire
        assert wire[:16] == _b64(f["wire_head_b64"]), p
        assert hashlib.sha256(wire).hexdigest() == f["wire_sha256"], p


def test_cert_chain_verifies_with_evolink() -> None:
    cert = V["cert_chain"]
    info = verify_cert_chain(
        bytes.fromhex(cert["payload"]),
        server_static=bytes.fromhex(KEYS["server_static"]["public"]),
        root_public=bytes.fromhex(KEYS["cert_root"]["public"]),
        now=cert["check_time"],
    )
    assert info is not None
    # Baileys (libsignal) signatures in the chain verify with evolink's verifier
    assert verify(
        bytes.fromhex(KEYS["cert_root"]["public"]),
        bytes.fromhex(cert["intermediate_details"]),
        bytes.fromhex(cert["intermediate_signature"]),
    )
    parsed = proto.parse(proto.CertChain, bytes.fromhex(cert["payload"]))
    assert parsed.SerializeToString().hex() == cert["payload"]
    inter = proto.parse(proto.CertChain.NoiseCertificate.Details, parsed.intermediate.details)
    assert inter.HasField("issuerSerial") and inter.issuerSerial == 0
    assert inter.SerializeToString().hex() == cert["intermediate_details"]


@pytest.mark.parametrize("kind", ["registration", "login"])
def test_client_payload_parses_like_protobufjs(kind: str) -> None:
    """evolink's .proto reads Baileys' ClientPayload to the same fields and re-serializes it exactly."""
    raw = bytes.fromhex(V["client_payload"][f"{kind}_hex"])
    msg = proto.parse(proto.ClientPayload, raw)
    as_dict = MessageToDict(msg, preserving_proto_field_name=True, use_integers_for_enums=True)
    assert as_dict == V["client_payload"][f"{kind}_json"]
    assert msg.SerializeToString() == raw


def test_registration_payload_contents() -> None:
    msg = proto.parse(proto.ClientPayload, bytes.fromhex(V["client_payload"]["registration_hex"]))
    reg = msg.devicePairingData
    assert reg.eIdent.hex() == KEYS["client_identity"]["public"]
    # Baileys' signed pre-key signature (libsignal) over 0x05 || eSkeyVal verifies under eIdent
    assert verify(reg.eIdent, b"\x05" + reg.eSkeyVal, reg.eSkeySig)
    props = proto.parse(proto.DeviceProps, reg.deviceProps)
    assert (
        MessageToDict(props, preserving_proto_field_name=True, use_integers_for_enums=True)
        == V["client_payload"]["device_props_json"]
    )
    assert props.SerializeToString() == reg.deviceProps
