"""Noise XX (WhatsApp variant): full in-process handshake, transport, tampering and bad input."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evolink.wire import certs, crypto, noise, proto
from evolink.wire.errors import NoiseError, ProtoError, WireError

NOW = 1_800_000_000


def _handshake(
    client_static: crypto.KeyPair | None = None,
) -> tuple[noise.NoiseInitiator, noise.NoiseResponder, noise.ServerHello, noise.ClientFinish, bytes]:
    root, inter, server = crypto.KeyPair.generate(), crypto.KeyPair.generate(), crypto.KeyPair.generate()
    client = client_static or crypto.KeyPair.generate()
    chain = certs.build_cert_chain(root, inter, server.public, not_before=NOW - 10, not_after=NOW + 10)
    ini = noise.NoiseInitiator(client)
    res = noise.NoiseResponder(server)
    assert res.read_client_hello(ini.client_hello()) == ini.ephemeral_public
    hello = ini.read_server_hello(res.server_hello(chain))
    assert hello.static == server.public and hello.cert_payload == chain
    certs.verify_cert_chain(hello.cert_payload, server_static=hello.static, root_public=root.public, now=NOW)
    finish = res.read_client_finish(ini.client_finish(b"client payload"))
    assert finish.static == client.public and finish.payload == b"client payload"
    return ini, res, hello, finish, chain


def test_full_handshake_and_transport_both_ways() -> None:
    ini, res, _, _, _ = _handshake()
    assert ini.handshake_hash == res.handshake_hash
    ct, st = ini.transport(), res.transport()
    for i in range(5):
        assert st.decrypt(ct.encrypt(b"up %d" % i)) == b"up %d" % i
        assert ct.decrypt(st.encrypt(b"down %d" % i)) == b"down %d" % i
    big = bytes(range(256)) * 4096
    assert st.decrypt(ct.encrypt(big)) == big
    assert ct.write_counter == 6 and st.read_counter == 6 and st.write_counter == 5


def _reference_transcript(
    client: crypto.KeyPair,
    client_e: crypto.KeyPair,
    server: crypto.KeyPair,
    server_e: crypto.KeyPair,
    cert: bytes,
) -> tuple[bytes, bytes, bytes]:
    """The §2.2 steps written out longhand, independently of noise.py's classes."""

    def hkdf2(ck: bytes, ikm: bytes) -> tuple[bytes, bytes]:
        out = crypto.hkdf(ikm, 64, salt=ck)
        return out[:32], out[32:]

    def iv(n: int) -> bytes:
        return bytes(8) + n.to_bytes(4, "big")

    h = ck = b"Noise_XX_25519_AESGCM_SHA256\0\0\0\0"
    h = hashlib.sha256(h + b"WA\x06\x03").digest()
    h = hashlib.sha256(h + client_e.public).digest()  # no MixHash of the empty payload
    h = hashlib.sha256(h + server_e.public).digest()
    ck, k = hkdf2(ck, crypto.dh(client_e.private, server_e.public))
    c_s = AESGCM(k).encrypt(iv(0), server.public, h)
    h = hashlib.sha256(h + c_s).digest()
    ck, k = hkdf2(ck, crypto.dh(client_e.private, server.public))
    c_p = AESGCM(k).encrypt(iv(0), cert, h)
    h = hashlib.sha256(h + c_p).digest()
    return c_s, c_p, h


def test_server_hello_matches_longhand_derivation() -> None:
    client, client_e = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    server, server_e = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    ini = noise.NoiseInitiator(client, ephemeral=client_e)
    res = noise.NoiseResponder(server, ephemeral=server_e)
    res.read_client_hello(ini.client_hello())
    msg = proto.parse(proto.HandshakeMessage, res.server_hello(b"cert"))
    c_s, c_p, h = _reference_transcript(client, client_e, server, server_e, b"cert")
    assert msg.serverHello.ephemeral == server_e.public
    assert (msg.serverHello.static, msg.serverHello.payload) == (c_s, c_p)
    assert res.handshake_hash == h


def test_stock_noise_extra_mixhash_would_not_interoperate() -> None:
    # Guard against "fixing" the variant: a responder that also hashes the empty payload derives
    # a different h, and the initiator must then refuse the server hello.
    client, server = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    ini = noise.NoiseInitiator(client)
    res = noise.NoiseResponder(server)
    res.read_client_hello(ini.client_hello())
    res._ss.mix_hash(b"")  # what stock Noise's EncryptAndHash("") would do
    with pytest.raises(NoiseError):
        ini.read_server_hello(res.server_hello(b"cert"))


def test_fixed_keys_give_deterministic_messages() -> None:
    keys = [crypto.KeyPair.from_private(bytes([i]) * 32) for i in range(1, 5)]
    out = []
    for _ in range(2):
        ini = noise.NoiseInitiator(keys[0], ephemeral=keys[1])
        res = noise.NoiseResponder(keys[2], ephemeral=keys[3])
        m1 = ini.client_hello()
        res.read_client_hello(m1)
        m2 = res.server_hello(b"cert")
        ini.read_server_hello(m2)
        m3 = ini.client_finish(b"payload")
        res.read_client_finish(m3)
        out.append((m1, m2, m3, ini.transport().encrypt(b"x")))
    assert out[0] == out[1]
    assert out[0][0] == b"\x12\x22\x0a\x20" + keys[1].public  # clientHello{ephemeral}


def test_flipped_bit_in_transport_frame_fails_and_counter_still_advances() -> None:
    ini, res, *_ = _handshake()
    ct, st = ini.transport(), res.transport()
    frames = [ct.encrypt(b"frame %d" % i) for i in range(3)]
    bad = bytearray(frames[1])
    bad[0] ^= 1
    assert st.decrypt(frames[0]) == b"frame 0"
    with pytest.raises(NoiseError):
        st.decrypt(bytes(bad))
    assert st.read_counter == 2
    assert st.decrypt(frames[2]) == b"frame 2"  # still lines up after the failure
    # sending is unaffected by read failures
    assert ct.decrypt(st.encrypt(b"reply")) == b"reply"


def test_counters_are_independent_and_order_matters() -> None:
    ini, res, *_ = _handshake()
    ct, st = ini.transport(), res.transport()
    a, b = ct.encrypt(b"a"), ct.encrypt(b"b")
    with pytest.raises(NoiseError):
        st.decrypt(b)  # b was encrypted with counter 1, receiver expects 0
    with pytest.raises(NoiseError):
        st.decrypt(a)  # a now arrives with receiver counter 1
    for i in range(3):
        assert ct.decrypt(st.encrypt(b"down %d" % i)) == b"down %d" % i
    assert (ct.write_counter, ct.read_counter, st.write_counter, st.read_counter) == (2, 3, 3, 2)
    assert st.decrypt(ct.encrypt(b"c")) == b"c"  # both sides at 2 again on this direction


@pytest.mark.parametrize("data", [b"", b"\x00" * 15, "text"])
def test_short_or_bad_transport_frames(data: bytes) -> None:
    ini, _, *_ = _handshake()
    t = ini.transport()
    with pytest.raises(NoiseError):
        t.decrypt(data)
    assert t.read_counter == 1


def test_split_direction_initiator_writes_first_half() -> None:
    ini, res, *_ = _handshake()
    ck = ini._ss.ck
    out = crypto.hkdf(b"", 64, salt=ck)
    ct = ini.transport()
    assert AESGCM(out[:32]).decrypt(bytes(12), ct.encrypt(b"hi"), None) == b"hi"
    st = res.transport()
    assert AESGCM(out[32:]).decrypt(bytes(12), st.encrypt(b"yo"), None) == b"yo"


def test_wrong_state_calls_are_refused() -> None:
    kp = crypto.KeyPair.generate()
    ini = noise.NoiseInitiator(kp)
    with pytest.raises(NoiseError):
        ini.client_finish(b"x")
    with pytest.raises(NoiseError):
        ini.transport()
    ini.client_hello()
    with pytest.raises(NoiseError):
        ini.client_hello()
    res = noise.NoiseResponder(kp)
    with pytest.raises(NoiseError):
        res.server_hello(b"cert")
    with pytest.raises(NoiseError):
        res.read_client_finish(b"")
    ini2, *_ = _handshake()
    ini2.transport()
    with pytest.raises(NoiseError):
        ini2.transport()  # handed out once only: two users would reuse nonces


def test_failed_handshake_stays_failed() -> None:
    ini = noise.NoiseInitiator(crypto.KeyPair.generate())
    ini.client_hello()
    with pytest.raises(WireError):
        ini.read_server_hello(b"garbage\xff")
    with pytest.raises(NoiseError):
        ini.read_server_hello(b"")


def _server_hello_bytes(**fields: bytes) -> bytes:
    msg = proto.HandshakeMessage()
    for k, v in fields.items():
        setattr(msg.serverHello, k, v)
    return msg.SerializeToString()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xff\xff", ProtoError),
        (proto.HandshakeMessage().SerializeToString(), NoiseError),  # no serverHello
        (_server_hello_bytes(ephemeral=b"e" * 32, static=b"s" * 48), ProtoError),  # no payload
        (_server_hello_bytes(ephemeral=b"e" * 31, static=b"s" * 48, payload=b"p" * 20), NoiseError),
        (_server_hello_bytes(ephemeral=b"e" * 33, static=b"s" * 48, payload=b"p" * 20), NoiseError),
        (_server_hello_bytes(ephemeral=b"\x00" * 32, static=b"s" * 48, payload=b"p" * 20), NoiseError),
        (_server_hello_bytes(ephemeral=b"e" * 32, static=b"s" * 48, payload=b"p" * 20), NoiseError),
    ],
)
def test_initiator_rejects_bad_server_hello(data: bytes, error: type[Exception]) -> None:
    ini = noise.NoiseInitiator(crypto.KeyPair.generate())
    ini.client_hello()
    with pytest.raises(error):
        ini.read_server_hello(data)


def test_initiator_rejects_server_static_of_wrong_length() -> None:
    # A correctly encrypted 31-byte "static" must still be refused.
    client, server = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    ini = noise.NoiseInitiator(client)
    res = noise.NoiseResponder(server)
    res.read_client_hello(ini.client_hello())
    res._static = crypto.KeyPair(private=server.private, public=server.public[:31])
    with pytest.raises(NoiseError, match="server static"):
        ini.read_server_hello(res.server_hello(b"cert"))


@pytest.mark.parametrize(
    "data",
    [
        b"\x12\x00",  # clientHello without ephemeral
        b"\x12\x02\x0a\x00",  # empty ephemeral
        b"\x22\x00",  # a clientFinish instead
        b"\x0a\x05hello",  # unknown field 1 only
        b"\x12\x22\x0a\x20" + b"e" * 31,  # truncated
    ],
)
def test_responder_rejects_bad_client_hello(data: bytes) -> None:
    res = noise.NoiseResponder(crypto.KeyPair.generate())
    with pytest.raises(WireError):
        res.read_client_hello(data)


def test_responder_rejects_tampered_client_finish() -> None:
    client, server = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    ini = noise.NoiseInitiator(client)
    res = noise.NoiseResponder(server)
    res.read_client_hello(ini.client_hello())
    ini.read_server_hello(res.server_hello(b"cert"))
    msg = proto.parse(proto.HandshakeMessage, ini.client_finish(b"payload"))
    payload = bytearray(msg.clientFinish.payload)
    payload[-1] ^= 0x01
    msg.clientFinish.payload = bytes(payload)
    with pytest.raises(NoiseError):
        res.read_client_finish(msg.SerializeToString())
    with pytest.raises(NoiseError):
        res.transport()


def test_responder_rejects_client_finish_missing_payload() -> None:
    ini = noise.NoiseInitiator(crypto.KeyPair.generate())
    res = noise.NoiseResponder(crypto.KeyPair.generate())
    res.read_client_hello(ini.client_hello())
    ini.read_server_hello(res.server_hello(b"cert"))
    msg = proto.parse(proto.HandshakeMessage, ini.client_finish(b"payload"))
    msg.clientFinish.ClearField("payload")
    with pytest.raises(ProtoError):
        res.read_client_finish(msg.SerializeToString())


def test_different_prologue_fails() -> None:
    ini = noise.NoiseInitiator(crypto.KeyPair.generate(), prologue=b"WA\x06\x02")
    res = noise.NoiseResponder(crypto.KeyPair.generate())
    res.read_client_hello(ini.client_hello())
    with pytest.raises(NoiseError):
        ini.read_server_hello(res.server_hello(b"cert"))


# ------------------------------------------------------------------------------- adversarial input


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_handshake_input_only_raises_wire_errors(data: bytes) -> None:
    res = noise.NoiseResponder(crypto.KeyPair.generate())
    try:
        res.read_client_hello(data)
    except WireError:
        pass
    ini = noise.NoiseInitiator(crypto.KeyPair.generate())
    ini.client_hello()
    with pytest.raises(WireError):  # random bytes can never authenticate
        ini.read_server_hello(data)


_VALID: dict[str, bytes] = {}


def _valid_messages() -> dict[str, bytes]:
    if not _VALID:
        keys = [crypto.KeyPair.from_private(bytes([i]) * 32) for i in range(1, 5)]
        ini = noise.NoiseInitiator(keys[0], ephemeral=keys[1])
        res = noise.NoiseResponder(keys[2], ephemeral=keys[3])
        _VALID["m1"] = ini.client_hello()
        res.read_client_hello(_VALID["m1"])
        _VALID["m2"] = res.server_hello(b"cert" * 20)
        ini.read_server_hello(_VALID["m2"])
        _VALID["m3"] = ini.client_finish(b"payload" * 10)
    return _VALID


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_server_hello_and_client_finish_are_refused(data: st.DataObject) -> None:
    msgs = _valid_messages()
    which = data.draw(st.sampled_from(["m2", "m3"]))
    original = msgs[which]
    pos = data.draw(st.integers(0, len(original) - 1))
    flip = data.draw(st.integers(1, 255))
    mutated = original[:pos] + bytes([original[pos] ^ flip]) + original[pos + 1 :]
    keys = [crypto.KeyPair.from_private(bytes([i]) * 32) for i in range(1, 5)]
    ini = noise.NoiseInitiator(keys[0], ephemeral=keys[1])
    res = noise.NoiseResponder(keys[2], ephemeral=keys[3])
    ini.client_hello()
    res.read_client_hello(msgs["m1"])
    res.server_hello(b"cert" * 20)
    with pytest.raises(WireError):
        if which == "m2":
            ini.read_server_hello(mutated)
        else:
            res.read_client_finish(mutated)
