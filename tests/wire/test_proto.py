"""The generated protobuf module: field numbers from wa-protocol.md, proto2 presence, strict parsing."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor

from evolink.wire import proto
from evolink.wire.errors import ProtoError, WireError


def _numbers(desc: Descriptor) -> dict[str, int]:
    return {f.name: f.number for f in desc.fields}


def test_field_numbers_match_the_protocol_doc() -> None:
    assert _numbers(proto.HandshakeMessage.DESCRIPTOR) == {
        "clientHello": 2,
        "serverHello": 3,
        "clientFinish": 4,
    }
    assert _numbers(proto.HandshakeMessage.ServerHello.DESCRIPTOR)["payload"] == 3
    assert _numbers(proto.HandshakeMessage.ClientFinish.DESCRIPTOR) == {
        "static": 1,
        "payload": 2,
        "extendedCiphertext": 3,
        "paddedBytes": 4,
        "simulateXxkemFs": 5,
    }
    assert _numbers(proto.CertChain.NoiseCertificate.Details.DESCRIPTOR) == {
        "serial": 1,
        "issuerSerial": 2,
        "key": 3,
        "notBefore": 4,
        "notAfter": 5,
    }
    cp = _numbers(proto.ClientPayload.DESCRIPTOR)
    for name, num in {
        "username": 1,
        "passive": 3,
        "userAgent": 5,
        "webInfo": 6,
        "pushName": 7,
        "connectType": 12,
        "connectReason": 13,
        "device": 18,
        "devicePairingData": 19,
        "lc": 24,
        "pull": 33,
        "lidDbMigrated": 41,
    }.items():
        assert cp[name] == num, name
    ua = _numbers(proto.ClientPayload.UserAgent.DESCRIPTOR)
    assert (ua["platform"], ua["appVersion"], ua["releaseChannel"], ua["localeCountryIso31661Alpha2"]) == (
        1,
        2,
        10,
        12,
    )
    reg = _numbers(proto.ClientPayload.DevicePairingRegistrationData.DESCRIPTOR)
    assert reg == {
        "eRegid": 1,
        "eKeytype": 2,
        "eIdent": 3,
        "eSkeyId": 4,
        "eSkeyVal": 5,
        "eSkeySig": 6,
        "buildHash": 7,
        "deviceProps": 8,
    }
    assert _numbers(proto.ADVDeviceIdentity.DESCRIPTOR) == {
        "rawId": 1,
        "timestamp": 2,
        "keyIndex": 3,
        "accountType": 4,
        "deviceType": 5,
    }
    assert _numbers(proto.ADVSignedDeviceIdentity.DESCRIPTOR) == {
        "details": 1,
        "accountSignatureKey": 2,
        "accountSignature": 3,
        "deviceSignature": 4,
    }
    assert _numbers(proto.ADVSignedDeviceIdentityHMAC.DESCRIPTOR) == {
        "details": 1,
        "hmac": 2,
        "accountType": 3,
    }
    assert proto.ADVEncryptionType.Value("HOSTED") == 1
    assert proto.ClientPayload.UserAgent.Platform.Value("WEB") == 14
    assert proto.DeviceProps.PlatformType.Value("CHROME") == 1
    assert proto.ClientPayload.ConnectType.Value("WIFI_UNKNOWN") == 1


def test_explicit_zero_issuer_serial_is_serialised() -> None:
    details = proto.CertChain.NoiseCertificate.Details(serial=1, issuerSerial=0, key=b"\x01" * 32)
    data = details.SerializeToString()
    assert data.startswith(b"\x08\x01\x10\x00")  # serial=1, then issuerSerial=0 kept on the wire
    # and an unset field is really absent, so presence survives a round trip
    unset = proto.CertChain.NoiseCertificate.Details(serial=1, key=b"\x01" * 32).SerializeToString()
    assert b"\x10\x00" not in unset
    assert proto.parse(proto.CertChain.NoiseCertificate.Details, data).HasField("issuerSerial")
    assert not proto.parse(proto.CertChain.NoiseCertificate.Details, unset).HasField("issuerSerial")


def test_client_payload_round_trip_keeps_unknown_fields() -> None:
    payload = proto.ClientPayload(username=15550001111, device=7, passive=True, pull=True)
    payload.userAgent.platform = proto.ClientPayload.UserAgent.WEB
    payload.userAgent.appVersion.primary = 2
    data = payload.SerializeToString() + bytes([0xA0, 0x01, 0x05])  # field 20 (product), varint 5
    parsed = proto.parse(proto.ClientPayload, data)
    assert parsed.username == 15550001111 and parsed.device == 7
    assert parsed.SerializeToString() == data


@pytest.mark.parametrize(
    "garbage",
    [b"\xff", b"\x12\x05abc", b"\x0a", b"\x12\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", b"\x13" * 10],
)
def test_garbage_raises_proto_error(garbage: bytes) -> None:
    with pytest.raises(ProtoError):
        proto.parse(proto.HandshakeMessage, garbage)


def test_deep_nesting_is_a_proto_error() -> None:
    # A self-similar bytes-in-message bomb cannot recurse (details is bytes), but deep groups can.
    bomb = b"\x0b" * 200_000  # start-group tags for field 1, never closed
    with pytest.raises(ProtoError):
        proto.parse(proto.ClientPayload, bomb)


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(ProtoError):
        proto.parse(proto.HandshakeMessage, "not bytes")  # type: ignore[arg-type]


def test_require_names_the_missing_field() -> None:
    msg = proto.HandshakeMessage.ServerHello(ephemeral=b"e" * 32)
    proto.require(msg, "ephemeral")
    with pytest.raises(ProtoError, match="static") as info:
        proto.require(msg, "ephemeral", "static", "payload")
    assert isinstance(info.value, WireError)
