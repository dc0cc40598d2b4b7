"""WhatsApp protobuf messages (generated from ``wa.proto``) and strict parse helpers.

Every parse of bytes that came off the wire goes through :func:`parse` so a malformed message
surfaces as :class:`~evolink.wire.errors.ProtoError`, never as a protobuf-internal exception.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message

from evolink.wire.errors import ProtoError
from evolink.wire.proto.wa_pb2 import (
    ADVDeviceIdentity,
    ADVEncryptionType,
    ADVKeyIndexList,
    ADVSignedDeviceIdentity,
    ADVSignedDeviceIdentityHMAC,
    ADVSignedKeyIndexList,
    CertChain,
    ClientPairingProps,
    ClientPayload,
    DeviceProps,
    HandshakeMessage,
    HandshakePqMode,
)

__all__ = [
    "ADVDeviceIdentity",
    "ADVEncryptionType",
    "ADVKeyIndexList",
    "ADVSignedDeviceIdentity",
    "ADVSignedDeviceIdentityHMAC",
    "ADVSignedKeyIndexList",
    "CertChain",
    "ClientPairingProps",
    "ClientPayload",
    "DeviceProps",
    "HandshakeMessage",
    "HandshakePqMode",
    "parse",
    "require",
]

M = TypeVar("M", bound=Message)


def parse(cls: type[M], data: bytes) -> M:
    """Parse ``data`` as a ``cls`` message, raising ``ProtoError`` on anything malformed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtoError(f"{cls.__name__}: expected bytes, got {type(data).__name__}")
    msg = cls()
    try:
        msg.ParseFromString(bytes(data))
    # The runtime raises DecodeError for bad wire data, but different backends (upb, python) have
    # been seen to raise other types for adversarial input (e.g. nesting too deep); none may escape.
    except Exception as exc:
        raise ProtoError(f"{cls.__name__}: malformed protobuf ({exc})") from exc
    return msg


def require(msg: Message, *fields: str) -> None:
    """Raise ``ProtoError`` naming the first of ``fields`` that is not present in ``msg``."""
    for name in fields:
        if not msg.HasField(name):
            raise ProtoError(f"{type(msg).__name__}: missing required field '{name}'")
