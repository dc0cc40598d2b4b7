"""The Noise server certificate chain (wa-protocol.md §2.5, §2.6): build it (sandbox) and verify it (client).

Verification applies every check whatsmeow makes, which is strictly more than Baileys does, plus
Baileys' own requirement that the intermediate ``issuerSerial`` is *explicitly* 0. Each failure
raises :class:`~evolink.wire.errors.CertificateError` whose ``check`` names the rule that failed,
so the engine can report e.g. a clock problem (``*_validity``) differently from a forged chain.
Time is injected (``now``) so the check is testable and can use a corrected clock.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from evolink.wire import proto
from evolink.wire.crypto import SIGNATURE_SIZE, KeyPair, sign, verify
from evolink.wire.errors import CertificateError, WireError

# WhatsApp's long-term root ("WhatsAppLongTerm1", serial 0) that signs the intermediate.
WA_CERT_PUBLIC_KEY = bytes.fromhex("142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b")
WA_CERT_ISSUER_SERIAL = 0

CHECKS = (
    "present",
    "signature_length",
    "root_signature",
    "intermediate_issuer",
    "intermediate_key",
    "leaf_signature",
    "leaf_issuer",
    "leaf_key",
    "intermediate_validity",
    "leaf_validity",
)

_Details = proto.CertChain.NoiseCertificate.Details


@dataclass(frozen=True)
class CertInfo:
    serial: int
    issuer_serial: int
    key: bytes
    not_before: int
    not_after: int


@dataclass(frozen=True)
class CertChainInfo:
    """The verified chain's decoded details."""

    intermediate: CertInfo
    leaf: CertInfo


def _details(serial: int, issuer_serial: int, key: bytes, not_before: int, not_after: int) -> bytes:
    d = _Details(serial=serial, key=key, notBefore=not_before, notAfter=not_after)
    d.issuerSerial = issuer_serial  # set even when 0: proto2 presence puts `10 00` on the wire
    return d.SerializeToString()


def build_cert_chain(
    root: KeyPair,
    intermediate: KeyPair,
    leaf_public: bytes,
    *,
    not_before: int,
    not_after: int,
    intermediate_serial: int = 1,
    leaf_serial: int = 2,
) -> bytes:
    """Serialized ``CertChain``: root signs the intermediate, the intermediate signs the leaf.

    ``leaf_public`` must be the server's Noise static public key.
    """
    inter_details = _details(
        intermediate_serial, WA_CERT_ISSUER_SERIAL, intermediate.public, not_before, not_after
    )
    leaf_details = _details(leaf_serial, intermediate_serial, bytes(leaf_public), not_before, not_after)
    chain = proto.CertChain()
    chain.intermediate.details = inter_details
    chain.intermediate.signature = sign(root.private, inter_details)
    chain.leaf.details = leaf_details
    chain.leaf.signature = sign(intermediate.private, leaf_details)
    return chain.SerializeToString()


def _parse_details(which: str, data: bytes) -> tuple[CertInfo, bool]:
    try:
        d = proto.parse(_Details, data)
    except WireError as exc:
        raise CertificateError("present", f"{which} details are not a valid Details message") from exc
    info = CertInfo(
        serial=d.serial,
        issuer_serial=d.issuerSerial,
        key=d.key,
        not_before=d.notBefore,
        not_after=d.notAfter,
    )
    return info, d.HasField("issuerSerial")


def _check_validity(check: str, cert: CertInfo, now: float, tolerance: float) -> None:
    if now + tolerance < cert.not_before:
        raise CertificateError(check, f"not valid before {cert.not_before} (now {now:.0f})")
    if now - tolerance > cert.not_after:
        raise CertificateError(check, f"expired at {cert.not_after} (now {now:.0f})")


def check_chain_validity(info: CertChainInfo, *, now: float, tolerance: float = 0) -> None:
    """The clock-dependent part of ``verify_cert_chain``: both validity windows, intermediate first
    (callers that memoise a verified chain re-run only this on every handshake)."""
    _check_validity("intermediate_validity", info.intermediate, now, tolerance)
    _check_validity("leaf_validity", info.leaf, now, tolerance)


def verify_cert_chain(
    payload: bytes,
    *,
    server_static: bytes,
    root_public: bytes,
    now: float,
    tolerance: float = 0,
) -> CertChainInfo:
    """Verify the decrypted ``serverHello.payload``. ``tolerance`` (seconds) widens both validity edges."""
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    try:
        chain = proto.parse(proto.CertChain, payload)
    except WireError as exc:
        raise CertificateError("present", "payload is not a CertChain") from exc

    present = {"leaf": chain.HasField("leaf"), "intermediate": chain.HasField("intermediate")}
    certs = {"leaf": chain.leaf, "intermediate": chain.intermediate}
    for name, cert in certs.items():
        if not present[name] or not cert.HasField("details") or not cert.HasField("signature"):
            raise CertificateError("present", f"{name} certificate or its details/signature is missing")
    for name, cert in certs.items():
        if len(cert.signature) != SIGNATURE_SIZE:
            raise CertificateError("signature_length", f"{name} signature is {len(cert.signature)} bytes")

    inter = chain.intermediate
    if not verify(root_public, inter.details, inter.signature):
        raise CertificateError("root_signature", "intermediate is not signed by the root key")
    inter_info, issuer_present = _parse_details("intermediate", inter.details)
    # Baileys requires the field to be present (an absent field decodes as null and fails ===0).
    if not issuer_present or inter_info.issuer_serial != WA_CERT_ISSUER_SERIAL:
        raise CertificateError("intermediate_issuer", "intermediate issuerSerial is not an explicit 0")
    if len(inter_info.key) != 32:
        raise CertificateError("intermediate_key", f"intermediate key is {len(inter_info.key)} bytes")

    leaf = chain.leaf
    if not verify(inter_info.key, leaf.details, leaf.signature):
        raise CertificateError("leaf_signature", "leaf is not signed by the intermediate key")
    leaf_info, _ = _parse_details("leaf", leaf.details)
    if leaf_info.issuer_serial != inter_info.serial:
        raise CertificateError(
            "leaf_issuer",
            f"leaf issuerSerial {leaf_info.issuer_serial} != intermediate serial {inter_info.serial}",
        )
    if not hmac.compare_digest(leaf_info.key, bytes(server_static)):
        raise CertificateError("leaf_key", "leaf key does not match the server static key")

    info = CertChainInfo(intermediate=inter_info, leaf=leaf_info)
    check_chain_validity(info, now=now, tolerance=tolerance)
    return info
