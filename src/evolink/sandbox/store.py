"""Sandbox state: the root key, phones (accounts) and their linked devices, in SQLite.

One file ``sandbox.db`` in the data dir, or an in-memory database (``--memory``). The sandbox is a
single asyncio process, and every statement here is a few microseconds of local SQLite work, so
the calls are synchronous on purpose (no thread hop, no interleaving between read and write).
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolink.sandbox.errors import AdminError

PHONE_RE = re.compile(r"^[1-9][0-9]{6,14}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS phones (
    phone TEXT PRIMARY KEY,
    lid TEXT NOT NULL UNIQUE,
    identity_private BLOB NOT NULL,
    identity_public BLOB NOT NULL,
    next_device INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    phone TEXT NOT NULL REFERENCES phones(phone) ON DELETE CASCADE,
    device INTEGER NOT NULL,
    noise_key BLOB NOT NULL,
    identity_key BLOB NOT NULL,
    registration_id INTEGER NOT NULL,
    key_index INTEGER NOT NULL,
    method TEXT NOT NULL,
    platform TEXT NOT NULL,
    linked_at INTEGER NOT NULL,
    prekeys INTEGER NOT NULL DEFAULT 0,
    last_login_at INTEGER,
    PRIMARY KEY (phone, device)
);
"""


def normalize_phone(raw: object) -> str:
    """Digits only, 7..15 of them, no leading zero (E.164 without '+')."""
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise AdminError(400, "invalid_phone", "phone must be a string of digits")
    text = str(raw).strip().lstrip("+")
    if not PHONE_RE.match(text):
        raise AdminError(400, "invalid_phone", "phone must be 7-15 digits without a leading 0")
    return text


@dataclass(frozen=True, slots=True)
class PhoneRecord:
    phone: str
    lid: str  # LID user part (digits), e.g. "123456789012345"
    identity_private: bytes  # the account (ADV) identity key pair
    identity_public: bytes
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "phone": self.phone,
            "jid": f"{self.phone}@s.whatsapp.net",
            "lid": f"{self.lid}@lid",
            "identity_public_key": self.identity_public.hex(),
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    phone: str
    device: int
    lid: str
    noise_key: bytes
    identity_key: bytes
    registration_id: int
    key_index: int
    method: str  # "qr" | "code"
    platform: str  # companion platform display, e.g. "Chrome (Mac OS)"
    linked_at: int
    prekeys: int
    last_login_at: int | None

    @property
    def jid(self) -> str:
        return f"{self.phone}:{self.device}@s.whatsapp.net"

    @property
    def lid_jid(self) -> str:
        return f"{self.lid}:{self.device}@lid"

    def to_json(self) -> dict[str, Any]:
        return {
            "phone": self.phone,
            "device": self.device,
            "jid": self.jid,
            "lid": self.lid_jid,
            "method": self.method,
            "platform": self.platform,
            "key_index": self.key_index,
            "registration_id": self.registration_id,
            "noise_public_key": self.noise_key.hex(),
            "identity_public_key": self.identity_key.hex(),
            "linked_at": self.linked_at,
            "prekeys": self.prekeys,
            "last_login_at": self.last_login_at,
        }


class SandboxStore:
    def __init__(self, data_dir: Path | None) -> None:
        if data_dir is None:
            target = ":memory:"
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            target = str(data_dir / "sandbox.db")
        self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA foreign_keys = ON")
        if data_dir is not None:
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, shared by the routing state (``routing_store.py``) in the same file."""
        return self._db

    # -- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- phones -----------------------------------------------------------------------------
    def create_phone(self, phone: str, identity_private: bytes, identity_public: bytes, now: int) -> PhoneRecord:
        if self.get_phone(phone) is not None:
            raise AdminError(409, "phone_exists", f"phone {phone} already exists")
        while True:
            lid = str(10**14 + secrets.randbelow(9 * 10**14))
            if self._db.execute("SELECT 1 FROM phones WHERE lid = ?", (lid,)).fetchone() is None:
                break
        self._db.execute(
            "INSERT INTO phones (phone, lid, identity_private, identity_public, created_at) VALUES (?, ?, ?, ?, ?)",
            (phone, lid, identity_private, identity_public, now),
        )
        return PhoneRecord(phone, lid, identity_private, identity_public, now)

    def get_phone(self, phone: str) -> PhoneRecord | None:
        row = self._db.execute(
            "SELECT phone, lid, identity_private, identity_public, created_at FROM phones WHERE phone = ?",
            (phone,),
        ).fetchone()
        if row is None:
            return None
        return PhoneRecord(row[0], row[1], bytes(row[2]), bytes(row[3]), row[4])

    def phone_by_lid(self, lid: str) -> str | None:
        row = self._db.execute("SELECT phone FROM phones WHERE lid = ?", (lid,)).fetchone()
        return None if row is None else str(row[0])

    def list_phones(self) -> list[PhoneRecord]:
        rows = self._db.execute("SELECT phone FROM phones ORDER BY phone").fetchall()
        return [p for (phone,) in rows if (p := self.get_phone(phone)) is not None]

    def allocate_device(self, phone: str) -> int:
        """Reserve the next device number; numbers are never reused, like the real service."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT next_device FROM phones WHERE phone = ?", (phone,)).fetchone()
            if row is None:
                raise AdminError(404, "phone_not_found", f"no phone {phone}")
            device = int(row[0])
            self._db.execute("UPDATE phones SET next_device = ? WHERE phone = ?", (device + 1, phone))
        return device

    # -- devices ----------------------------------------------------------------------------
    def add_device(self, phone: str, device: int, *, noise_key: bytes, identity_key: bytes,
                   registration_id: int, key_index: int, method: str, platform: str, now: int) -> DeviceRecord:
        self._db.execute(
            "INSERT INTO devices (phone, device, noise_key, identity_key, registration_id, key_index, method,"
            " platform, linked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (phone, device, noise_key, identity_key, registration_id, key_index, method, platform, now),
        )
        record = self.get_device(phone, device)
        assert record is not None
        return record

    def get_device(self, phone: str, device: int) -> DeviceRecord | None:
        row = self._db.execute(
            "SELECT d.phone, d.device, p.lid, d.noise_key, d.identity_key, d.registration_id, d.key_index,"
            " d.method, d.platform, d.linked_at, d.prekeys, d.last_login_at"
            " FROM devices d JOIN phones p ON p.phone = d.phone WHERE d.phone = ? AND d.device = ?",
            (phone, device),
        ).fetchone()
        return None if row is None else _device(row)

    def list_devices(self, phone: str) -> list[DeviceRecord]:
        rows = self._db.execute(
            "SELECT d.phone, d.device, p.lid, d.noise_key, d.identity_key, d.registration_id, d.key_index,"
            " d.method, d.platform, d.linked_at, d.prekeys, d.last_login_at"
            " FROM devices d JOIN phones p ON p.phone = d.phone WHERE d.phone = ? ORDER BY d.device",
            (phone,),
        ).fetchall()
        return [_device(r) for r in rows]

    def remove_device(self, phone: str, device: int) -> bool:
        cur = self._db.execute("DELETE FROM devices WHERE phone = ? AND device = ?", (phone, device))
        return cur.rowcount > 0

    def add_prekeys(self, phone: str, device: int, count: int) -> None:
        self._db.execute(
            "UPDATE devices SET prekeys = prekeys + ? WHERE phone = ? AND device = ?", (count, phone, device)
        )

    def mark_login(self, phone: str, device: int, now: int) -> None:
        self._db.execute(
            "UPDATE devices SET last_login_at = ? WHERE phone = ? AND device = ?", (now, phone, device)
        )


def _device(row: tuple[Any, ...]) -> DeviceRecord:
    return DeviceRecord(
        phone=row[0], device=int(row[1]), lid=row[2], noise_key=bytes(row[3]), identity_key=bytes(row[4]),
        registration_id=int(row[5]), key_index=int(row[6]), method=row[7], platform=row[8],
        linked_at=int(row[9]), prekeys=int(row[10]), last_login_at=row[11],
    )
