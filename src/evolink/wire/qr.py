"""The linking QR string (wa-protocol.md §7.3).

``https://wa.me/settings/linked_devices#<ref>,<noiseB64>,<identityB64>,<advSecretB64>,<platformId>``

Keys use standard base64 *with* padding. The parser also accepts the Evolution API form without the
URL prefix and without the platform id, and rejects everything else with :class:`QrError`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from evolink.wire.errors import WireError

QR_PREFIX = "https://wa.me/settings/linked_devices#"
MAX_REF_LENGTH = 512
_PLATFORM_ID = re.compile(r"[0-9a-z]")
_REF_CHARS = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable ASCII except space and ","


class QrError(WireError):
    """A QR string (or a value to put in one) is malformed."""


@dataclass(frozen=True)
class QrData:
    ref: str
    noise_public: bytes
    identity_public: bytes
    adv_secret: bytes = field(repr=False)  # lets whoever holds it forge pair-success HMACs
    platform_id: str | None


def _check_ref(ref: str) -> str:
    if not 0 < len(ref) <= MAX_REF_LENGTH or not _REF_CHARS.fullmatch(ref):
        raise QrError("ref must be 1..512 printable ASCII characters without ',' or spaces")
    return ref


def _key(name: str, value: bytes) -> str:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise QrError(f"{name} must be 32 bytes")
    return base64.b64encode(bytes(value)).decode("ascii")


def build_qr(
    ref: bytes | str,
    noise_public: bytes,
    identity_public: bytes,
    adv_secret: bytes,
    platform_id: str | None = "1",
) -> str:
    """Build the QR payload; ``platform_id=None`` drops the last field (older clients' form)."""
    if isinstance(ref, bytes | bytearray):
        try:
            ref = bytes(ref).decode("ascii")
        except UnicodeDecodeError as exc:
            raise QrError("ref bytes are not ASCII") from exc
    parts = [
        _check_ref(ref),
        _key("noise public key", noise_public),
        _key("identity public key", identity_public),
        _key("adv secret", adv_secret),
    ]
    if platform_id is not None:
        if not _PLATFORM_ID.fullmatch(platform_id):
            raise QrError(f"bad platform id {platform_id!r}")
        parts.append(platform_id)
    return QR_PREFIX + ",".join(parts)


def _decode_key(name: str, text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise QrError(f"{name} is not valid base64") from exc
    # Canonical form only: padding present and no stray bits, so one key has one spelling.
    if len(raw) != 32 or base64.b64encode(raw).decode("ascii") != text:
        raise QrError(f"{name} must be 32 bytes in padded standard base64")
    return raw


def parse_qr(s: str) -> QrData:
    """Parse a QR string, with or without the URL prefix and with or without the platform id."""
    if not isinstance(s, str):
        raise QrError("QR data must be a str")
    if len(s) > len(QR_PREFIX) + MAX_REF_LENGTH + 3 * 45 + 8:
        raise QrError("QR data too long")
    text = s.strip()
    if text.startswith(QR_PREFIX):
        text = text[len(QR_PREFIX) :]
    parts = text.split(",")
    if len(parts) not in (4, 5):
        raise QrError(f"expected 4 or 5 comma-separated fields, got {len(parts)}")
    platform_id: str | None = None
    if len(parts) == 5:
        platform_id = parts[4]
        if not _PLATFORM_ID.fullmatch(platform_id):
            raise QrError(f"bad platform id {platform_id!r}")
    return QrData(
        ref=_check_ref(parts[0]),
        noise_public=_decode_key("noise public key", parts[1]),
        identity_public=_decode_key("identity public key", parts[2]),
        adv_secret=_decode_key("adv secret", parts[3]),
        platform_id=platform_id,
    )
