"""Routing state in the sandbox's SQLite file: Signal key bundles, per-device queues, groups.

The server only keeps metadata and ciphertext: public keys as devices uploaded them, the stanzas
waiting for a device's acknowledgement, and group membership. Synchronous on purpose, like
``store.py`` (a few microseconds of local SQLite work per call, no interleaving).
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signal_identity (
    phone TEXT NOT NULL,
    device INTEGER NOT NULL,
    registration_id INTEGER NOT NULL,
    identity BLOB NOT NULL,
    spk_id INTEGER NOT NULL,
    spk_pub BLOB NOT NULL,
    spk_sig BLOB NOT NULL,
    PRIMARY KEY (phone, device)
);
CREATE TABLE IF NOT EXISTS prekeys (
    phone TEXT NOT NULL,
    device INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    pub BLOB NOT NULL,
    PRIMARY KEY (phone, device, key_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    phone TEXT NOT NULL,
    device INTEGER NOT NULL,
    tag TEXT NOT NULL,
    stanza_id TEXT NOT NULL,
    peer TEXT NOT NULL,
    node BLOB NOT NULL,
    UNIQUE (phone, device, tag, stanza_id, peer)
);
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    creator TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    addressing_mode TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    phone TEXT NOT NULL,
    admin TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (group_id, phone)
);
CREATE TABLE IF NOT EXISTS group_descriptions (
    group_id TEXT PRIMARY KEY REFERENCES groups(id) ON DELETE CASCADE,
    description_id TEXT NOT NULL,
    body TEXT NOT NULL,
    author TEXT NOT NULL,
    t INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Bundle:
    """A device's public Signal keys as uploaded (``iq xmlns="encrypt" type="set"``)."""

    registration_id: int
    identity: bytes  # 32 bytes
    spk_id: int
    spk_pub: bytes
    spk_sig: bytes


@dataclass(frozen=True, slots=True)
class Queued:
    seq: int
    tag: str
    stanza_id: str
    peer: str
    node: bytes  # binary-encoded stanza (without the offline attribute)


@dataclass(frozen=True, slots=True)
class Group:
    id: str  # user part, no @g.us
    subject: str
    creator: str  # phone
    created_at: int
    addressing_mode: str  # "lid" | "pn"
    members: tuple[tuple[str, str], ...]  # (phone, "" | "admin" | "superadmin")

    @property
    def jid(self) -> str:
        return f"{self.id}@g.us"


class RoutingStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(_SCHEMA)

    # -- key bundles -------------------------------------------------------------------------
    def set_bundle(self, phone: str, device: int, bundle: Bundle) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO signal_identity (phone, device, registration_id, identity, spk_id, spk_pub,"
            " spk_sig) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (phone, device, bundle.registration_id, bundle.identity, bundle.spk_id, bundle.spk_pub, bundle.spk_sig),
        )

    def set_signed_prekey(self, phone: str, device: int, spk_id: int, pub: bytes, sig: bytes) -> bool:
        cur = self._db.execute(
            "UPDATE signal_identity SET spk_id = ?, spk_pub = ?, spk_sig = ? WHERE phone = ? AND device = ?",
            (spk_id, pub, sig, phone, device),
        )
        return cur.rowcount > 0

    def get_bundle(self, phone: str, device: int) -> Bundle | None:
        row = self._db.execute(
            "SELECT registration_id, identity, spk_id, spk_pub, spk_sig FROM signal_identity"
            " WHERE phone = ? AND device = ?", (phone, device),
        ).fetchone()
        return None if row is None else Bundle(int(row[0]), bytes(row[1]), int(row[2]), bytes(row[3]), bytes(row[4]))

    def add_prekeys(self, phone: str, device: int, keys: list[tuple[int, bytes]]) -> None:
        """Append one-time pre-keys; a re-uploaded id replaces the stored one."""
        self._db.executemany(
            "INSERT OR REPLACE INTO prekeys (phone, device, key_id, pub) VALUES (?, ?, ?, ?)",
            [(phone, device, key_id, pub) for key_id, pub in keys],
        )

    def prekey_count(self, phone: str, device: int) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM prekeys WHERE phone = ? AND device = ?",
                               (phone, device)).fetchone()
        return int(row[0])

    def pop_prekey(self, phone: str, device: int) -> tuple[int, bytes] | None:
        """Hand out the oldest one-time pre-key exactly once (it leaves the pool)."""
        row = self._db.execute(
            "SELECT key_id, pub FROM prekeys WHERE phone = ? AND device = ? ORDER BY rowid LIMIT 1",
            (phone, device),
        ).fetchone()
        if row is None:
            return None
        self._db.execute("DELETE FROM prekeys WHERE phone = ? AND device = ? AND key_id = ?",
                         (phone, device, row[0]))
        return int(row[0]), bytes(row[1])

    def forget_device(self, phone: str, device: int) -> None:
        """A removed device: its keys and its queue go with it."""
        for table in ("signal_identity", "prekeys", "outbox"):
            self._db.execute(f"DELETE FROM {table} WHERE phone = ? AND device = ?", (phone, device))

    # -- per-device queue --------------------------------------------------------------------
    def enqueue(self, phone: str, device: int, tag: str, stanza_id: str, peer: str, node: bytes) -> None:
        """Keep a stanza for a device until it acknowledges (a stanza with the same name is replaced)."""
        self._db.execute(
            "INSERT OR REPLACE INTO outbox (phone, device, tag, stanza_id, peer, node) VALUES (?, ?, ?, ?, ?, ?)",
            (phone, device, tag, stanza_id, peer, node),
        )

    def queued(self, phone: str, device: int, after: int = 0, limit: int = 500) -> list[Queued]:
        rows = self._db.execute(
            "SELECT seq, tag, stanza_id, peer, node FROM outbox WHERE phone = ? AND device = ? AND seq > ?"
            " ORDER BY seq LIMIT ?", (phone, device, after, limit),
        ).fetchall()
        return [Queued(int(r[0]), r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def queue_length(self, phone: str, device: int) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE phone = ? AND device = ?",
                               (phone, device)).fetchone()
        return int(row[0])

    def acknowledge(self, phone: str, device: int, tag: str, stanza_id: str, peer: str | None) -> int:
        """The device acknowledged ``stanza_id`` (receipt or ack): drop it; ``peer`` narrows it down."""
        if peer is None:
            cur = self._db.execute(
                "DELETE FROM outbox WHERE phone = ? AND device = ? AND tag = ? AND stanza_id = ?",
                (phone, device, tag, stanza_id),
            )
        else:
            cur = self._db.execute(
                "DELETE FROM outbox WHERE phone = ? AND device = ? AND tag = ? AND stanza_id = ? AND peer = ?",
                (phone, device, tag, stanza_id, peer),
            )
        return cur.rowcount

    # -- groups ------------------------------------------------------------------------------
    def create_group(self, subject: str, creator: str, members: list[tuple[str, str]], now: int,
                     addressing_mode: str = "lid") -> Group:
        while True:
            gid = "120363" + str(10**11 + secrets.randbelow(9 * 10**11))
            if self._db.execute("SELECT 1 FROM groups WHERE id = ?", (gid,)).fetchone() is None:
                break
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO groups (id, subject, creator, created_at, addressing_mode) VALUES (?, ?, ?, ?, ?)",
                (gid, subject, creator, now, addressing_mode),
            )
            self._db.executemany("INSERT INTO group_members (group_id, phone, admin) VALUES (?, ?, ?)",
                                 [(gid, phone, admin) for phone, admin in members])
        group = self.get_group(gid)
        assert group is not None
        return group

    def get_group(self, gid: str) -> Group | None:
        row = self._db.execute("SELECT id, subject, creator, created_at, addressing_mode FROM groups WHERE id = ?",
                               (gid,)).fetchone()
        if row is None:
            return None
        members = self._db.execute("SELECT phone, admin FROM group_members WHERE group_id = ? ORDER BY rowid",
                                   (gid,)).fetchall()
        return Group(row[0], row[1], row[2], int(row[3]), row[4], tuple((m[0], m[1]) for m in members))

    def set_admin(self, gid: str, phones: list[str], admin: str) -> None:
        with self._db:
            self._db.executemany("UPDATE group_members SET admin = ? WHERE group_id = ? AND phone = ?",
                                 [(admin, gid, p) for p in phones])

    def set_description(self, gid: str, description: tuple[str, str, str, int] | None) -> None:
        """(id, body, author phone, t), or None to clear it."""
        with self._db:
            self._db.execute("DELETE FROM group_descriptions WHERE group_id = ?", (gid,))
            if description is not None:
                self._db.execute("INSERT INTO group_descriptions (group_id, description_id, body, author, t) "
                                 "VALUES (?, ?, ?, ?, ?)", (gid, *description))

    def get_description(self, gid: str) -> tuple[str, str, str, int] | None:
        row = self._db.execute("SELECT description_id, body, author, t FROM group_descriptions WHERE group_id = ?",
                               (gid,)).fetchone()
        return None if row is None else (row[0], row[1], row[2], int(row[3]))

    def list_groups(self) -> list[Group]:
        rows = self._db.execute("SELECT id FROM groups ORDER BY created_at, id").fetchall()
        return [g for (gid,) in rows if (g := self.get_group(gid)) is not None]

    def groups_of(self, phone: str) -> list[Group]:
        rows = self._db.execute("SELECT group_id FROM group_members WHERE phone = ?", (phone,)).fetchall()
        return [g for (gid,) in rows if (g := self.get_group(gid)) is not None]
