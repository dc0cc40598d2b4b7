"""What the simulated primary phone computes when it links a companion (QR or pairing code).

Pure functions over ``evolink.wire`` crypto and protobufs; the connection code decides when to call
them and what to do with a refusal (:class:`LinkRefused` carries the admin API error name).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from google.protobuf.message import DecodeError as PbDecodeError

from evolink.sandbox.errors import AdminError
from evolink.wire import crypto
from evolink.wire.crypto import KeyPair
from evolink.wire.errors import CryptoError
from evolink.wire.proto import wa_pb2


class LinkRefused(AdminError):
    """The phone refused the link (4xx for the admin caller, error iq for the companion)."""


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """The pair-success ADV identity and what the pair-device-sign reply must match."""

    container: bytes  # serialized ADVSignedDeviceIdentityHMAC, sent as <device-identity>
    details: bytes  # serialized ADVDeviceIdentity
    account_signature: bytes
    key_index: int


def build_device_identity(account: KeyPair, companion_identity: bytes, adv_secret: bytes, *,
                          key_index: int, timestamp: int) -> DeviceIdentity:
    details = wa_pb2.ADVDeviceIdentity(
        rawId=secrets.randbits(32),
        timestamp=timestamp,
        keyIndex=key_index,
        accountType=wa_pb2.E2EE,
        deviceType=wa_pb2.E2EE,
    ).SerializeToString()
    account_signature = crypto.sign(
        account.private, crypto.account_signature_message(details, companion_identity)
    )
    signed = wa_pb2.ADVSignedDeviceIdentity(
        details=details, accountSignatureKey=account.public, accountSignature=account_signature
    ).SerializeToString()
    container = wa_pb2.ADVSignedDeviceIdentityHMAC(
        details=signed, hmac=crypto.adv_hmac(adv_secret, signed), accountType=wa_pb2.E2EE
    ).SerializeToString()
    return DeviceIdentity(container, details, account_signature, key_index)


def verify_device_sign(blob: bytes, key_index_attr: str | None, expected: DeviceIdentity,
                       account_public: bytes, companion_identity: bytes) -> None:
    """Check the companion's ``pair-device-sign`` identity; raise :class:`LinkRefused` if wrong."""
    try:
        signed = wa_pb2.ADVSignedDeviceIdentity.FromString(blob)
    except (PbDecodeError, ValueError) as exc:
        raise LinkRefused(400, "bad_device_identity", f"unparseable device identity: {exc}") from exc
    if signed.details != expected.details:
        raise LinkRefused(400, "bad_device_identity", "device identity details differ from pair-success")
    if signed.accountSignature != expected.account_signature:
        raise LinkRefused(400, "bad_device_identity", "account signature differs from pair-success")
    if key_index_attr != str(expected.key_index):
        raise LinkRefused(400, "bad_device_identity", f"key-index {key_index_attr!r} != {expected.key_index}")
    message = crypto.device_signature_message(signed.details, companion_identity, account_public)
    if not crypto.verify(companion_identity, message, signed.deviceSignature):
        raise LinkRefused(400, "bad_device_signature", "device signature does not verify")


@dataclass(frozen=True, slots=True)
class PrimaryHello:
    """The phone's half of code pairing after the user typed ``code``."""

    ephemeral: KeyPair
    wrapped_primary: bytes  # 80 bytes for <link_code_pairing_wrapped_primary_ephemeral_pub>
    companion_ephemeral: bytes  # unwrapped with the typed code (garbage if the code is wrong)


def primary_hello(code: str, wrapped_companion: bytes) -> PrimaryHello:
    ephemeral = KeyPair.generate()
    try:
        companion = crypto.unwrap_ephemeral(code, wrapped_companion)
        wrapped = crypto.wrap_ephemeral(code, ephemeral.public)
    except CryptoError as exc:
        raise LinkRefused(400, "bad_registration", str(exc)) from exc
    return PrimaryHello(ephemeral, wrapped, companion)


def finish_code_pairing(hello: PrimaryHello, account: KeyPair, wrapped_bundle: bytes,
                        companion_identity: bytes) -> bytes:
    """Open the companion's key bundle and derive the ADV secret; a wrong code fails the GCM tag.

    With a wrong code the phone unwrapped a different companion ephemeral key, so the shared
    secret differs and the bundle cannot be opened: that is how the phone learns the code was
    wrong (AES-CTR wrapping itself has no integrity check).
    """
    try:
        eph_shared = crypto.dh(hello.ephemeral.private, hello.companion_ephemeral)
        bundle = crypto.decrypt_key_bundle(eph_shared, wrapped_bundle)
    except CryptoError as exc:
        raise LinkRefused(400, "wrong_code", "the pairing code does not match this registration") from exc
    if len(bundle) != 96:
        raise LinkRefused(400, "bad_key_bundle", f"key bundle is {len(bundle)} bytes, expected 96")
    if bundle[:32] != companion_identity:
        raise LinkRefused(400, "identity_mismatch", "bundle companion identity differs")
    if bundle[32:64] != account.public:
        raise LinkRefused(400, "identity_mismatch", "bundle primary identity is not this phone's")
    try:
        identity_shared = crypto.dh(account.private, companion_identity)
    except CryptoError as exc:
        raise LinkRefused(400, "identity_mismatch", str(exc)) from exc
    return crypto.derive_adv_secret(eph_shared, identity_shared, bundle[64:96])
