"""Device credentials and where they live.

``Creds`` is a plain dataclass that round-trips through JSON (bytes as base64). ``CredsStore`` is the
small async interface the engine persists through; the gateway can back it with its database.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from evolink.wire.crypto import KeyPair, signed_prekey_signature

CREDS_SCHEMA = 1

_BYTES_FIELDS = {
    "noise_private": 32, "noise_public": 32, "identity_private": 32, "identity_public": 32,
    "signed_pre_key_private": 32, "signed_pre_key_public": 32, "signed_pre_key_signature": 64,
    "adv_secret": 32,
}
_OPTIONAL_BYTES = ("account", "primary_identity", "routing_info")


class CredsError(ValueError):
    """Stored credentials are malformed (wrong type, bad base64, wrong key length)."""


@dataclass(slots=True)
class Creds:
    noise_private: bytes = field(repr=False)
    noise_public: bytes
    identity_private: bytes = field(repr=False)
    identity_public: bytes
    signed_pre_key_id: int
    signed_pre_key_private: bytes = field(repr=False)
    signed_pre_key_public: bytes
    signed_pre_key_signature: bytes
    registration_id: int
    adv_secret: bytes = field(repr=False)
    me_jid: str | None = None  # "phone:device@s.whatsapp.net" once paired
    me_lid: str | None = None
    platform: str | None = None  # primary's platform from pair-success
    push_name: str | None = None
    business_name: str | None = None
    account: bytes | None = None  # ADVSignedDeviceIdentity incl. accountSignatureKey and our device sig
    primary_identity: bytes | None = None  # the phone's identity key (accountSignatureKey)
    routing_info: bytes | None = None
    next_pre_key_id: int = 1
    pre_keys: dict[int, bytes] = field(default_factory=dict, repr=False)  # uploaded one-time pre-keys: id -> private

    @classmethod
    def new(cls) -> Creds:
        """Fresh device identity (noise key, identity key, signed pre-key, ADV secret)."""
        identity = KeyPair.generate()
        spk = KeyPair.generate()
        return cls._assemble(identity, spk, signed_prekey_signature(identity.private, spk.public))

    @classmethod
    async def new_async(cls) -> Creds:
        """``new()`` with the XEdDSA signing (~1 ms of C that releases the GIL) in a worker thread."""
        identity = KeyPair.generate()
        spk = KeyPair.generate()
        signature = await asyncio.to_thread(signed_prekey_signature, identity.private, spk.public)
        return cls._assemble(identity, spk, signature)

    @classmethod
    def _assemble(cls, identity: KeyPair, spk: KeyPair, signature: bytes) -> Creds:
        noise = KeyPair.generate()
        return cls(
            noise_private=noise.private, noise_public=noise.public,
            identity_private=identity.private, identity_public=identity.public,
            signed_pre_key_id=1, signed_pre_key_private=spk.private, signed_pre_key_public=spk.public,
            signed_pre_key_signature=signature,
            # 14 bits like the Signal registration id; whatsmeow uses 32 bits, both are accepted.
            registration_id=secrets.randbelow(16380) + 1,
            adv_secret=secrets.token_bytes(32),
        )

    @property
    def registered(self) -> bool:
        return self.me_jid is not None and self.account is not None

    @property
    def noise_key(self) -> KeyPair:
        return KeyPair(self.noise_private, self.noise_public)

    @property
    def identity_key(self) -> KeyPair:
        return KeyPair(self.identity_private, self.identity_public)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": CREDS_SCHEMA}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bytes):
                out[f.name] = base64.b64encode(value).decode()
            elif f.name == "pre_keys":
                out[f.name] = {str(k): base64.b64encode(v).decode() for k, v in value.items()}
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Creds:
        if not isinstance(data, dict):
            raise CredsError("creds must be a JSON object")
        if data.get("schema", CREDS_SCHEMA) != CREDS_SCHEMA:
            raise CredsError(f"unsupported creds schema {data.get('schema')!r}")
        kwargs: dict[str, Any] = {}
        for name, size in _BYTES_FIELDS.items():
            kwargs[name] = _b64(data, name, size)
        for name in _OPTIONAL_BYTES:
            kwargs[name] = None if data.get(name) is None else _b64(data, name, None)
        for name in ("signed_pre_key_id", "registration_id", "next_pre_key_id"):
            value = data.get(name, 1 if name == "next_pre_key_id" else None)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise CredsError(f"creds field {name!r} must be a non-negative integer")
            kwargs[name] = value
        for name in ("me_jid", "me_lid", "platform", "push_name", "business_name"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise CredsError(f"creds field {name!r} must be a string")
            kwargs[name] = value
        raw_pre_keys = data.get("pre_keys") or {}
        if not isinstance(raw_pre_keys, dict):
            raise CredsError("creds field 'pre_keys' must be an object")
        try:
            kwargs["pre_keys"] = {int(k): _decode(v, f"pre_keys[{k}]", 32) for k, v in raw_pre_keys.items()}
        except ValueError as exc:
            raise CredsError(f"bad pre_keys entry: {exc}") from None
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Creds:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CredsError(f"creds are not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _decode(value: Any, name: str, size: int | None) -> bytes:
    if not isinstance(value, str):
        raise CredsError(f"creds field {name!r} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CredsError(f"creds field {name!r} is not valid base64") from None
    if size is not None and len(raw) != size:
        raise CredsError(f"creds field {name!r} must be {size} bytes, got {len(raw)}")
    return raw


def _b64(data: dict[str, Any], name: str, size: int | None) -> bytes:
    if name not in data:
        raise CredsError(f"creds field {name!r} is missing")
    return _decode(data[name], name, size)


class CredsStore(Protocol):
    """Where one engine's credentials live. ``load`` returns None when nothing is stored."""

    async def load(self) -> Creds | None: ...

    async def save(self, creds: Creds) -> None: ...

    async def clear(self) -> None: ...


class MemoryCredsStore:
    """Keeps a JSON copy (so callers cannot mutate what is stored behind the engine's back)."""

    def __init__(self, creds: Creds | None = None) -> None:
        self._json: str | None = creds.to_json() if creds else None

    async def load(self) -> Creds | None:
        return None if self._json is None else Creds.from_json(self._json)

    async def save(self, creds: Creds) -> None:
        self._json = creds.to_json()

    async def clear(self) -> None:
        self._json = None

    @property
    def empty(self) -> bool:
        return self._json is None


class FileCredsStore:
    """One JSON file, written atomically (temp file + fsync + rename), mode 0600; I/O off the loop."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    async def load(self) -> Creds | None:
        text = await asyncio.to_thread(self._read)
        return None if text is None else Creds.from_json(text)

    async def save(self, creds: Creds) -> None:
        await asyncio.to_thread(self._write, creds.to_json())

    async def clear(self) -> None:
        await asyncio.to_thread(self.path.unlink, True)

    def _read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".creds-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
