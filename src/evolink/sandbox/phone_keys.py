"""The simulated phone's own Signal keys (device 0): it is a participant like any companion.

Its identity key is the account key (the one that signs companions' ADV identities, as on a real
primary phone); a signed pre-key and a pool of one-time pre-keys are generated on demand and
published like an upload, so others can open sessions to device 0. The private halves stay in the
sandbox's database for the phone's own decryption.
"""

from __future__ import annotations

import secrets
import sqlite3

from evolink.sandbox.routing_store import Bundle, RoutingStore
from evolink.wire import crypto
from evolink.wire.crypto import KeyPair

POOL = 50  # one-time pre-keys published per top-up

_SCHEMA = """
CREATE TABLE IF NOT EXISTS phone_secrets (
    phone TEXT NOT NULL,
    kind TEXT NOT NULL,            -- 'spk' | 'opk'
    key_id INTEGER NOT NULL,
    private BLOB NOT NULL,
    PRIMARY KEY (phone, kind, key_id)
);
CREATE TABLE IF NOT EXISTS phone_records (
    phone TEXT NOT NULL,
    kind TEXT NOT NULL,            -- 'session' (by Signal address) | 'sender_key' (by sender-key name)
    name TEXT NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (phone, kind, name)
);
"""


class PhoneKeys:
    def __init__(self, db: sqlite3.Connection, routing: RoutingStore) -> None:
        self._db = db
        self._routing = routing
        db.executescript(_SCHEMA)

    def ensure(self, phone: str, identity_private: bytes) -> None:
        """Publish device 0's bundle if it has none (new phone, or a database from before routing)."""
        if self._routing.get_bundle(phone, 0) is not None:
            return
        identity = KeyPair.from_private(identity_private)
        spk = KeyPair.generate()
        self._db.execute("INSERT OR REPLACE INTO phone_secrets VALUES (?, 'spk', 1, ?)", (phone, spk.private))
        self._routing.set_bundle(phone, 0, Bundle(
            registration_id=1 + secrets.randbelow(16380), identity=identity.public, spk_id=1, spk_pub=spk.public,
            spk_sig=crypto.signed_prekey_signature(identity.private, spk.public),
        ))
        self.top_up(phone)

    def top_up(self, phone: str) -> None:
        """Publish :data:`POOL` more one-time pre-keys (ids continue; never reused)."""
        row = self._db.execute("SELECT MAX(key_id) FROM phone_secrets WHERE phone = ? AND kind = 'opk'",
                               (phone,)).fetchone()
        start = int(row[0] or 0) + 1
        keys = [(i, KeyPair.generate()) for i in range(start, start + POOL)]
        self._db.executemany("INSERT INTO phone_secrets VALUES (?, 'opk', ?, ?)",
                             [(phone, i, k.private) for i, k in keys])
        self._routing.add_prekeys(phone, 0, [(i, k.public) for i, k in keys])

    def private(self, phone: str, kind: str, key_id: int) -> bytes | None:
        row = self._db.execute("SELECT private FROM phone_secrets WHERE phone = ? AND kind = ? AND key_id = ?",
                               (phone, kind, key_id)).fetchone()
        return None if row is None else bytes(row[0])

    def drop_prekey(self, phone: str, key_id: int) -> None:
        """A one-time pre-key consumed by an incoming pkmsg: its private half goes for good."""
        self._db.execute("DELETE FROM phone_secrets WHERE phone = ? AND kind = 'opk' AND key_id = ?", (phone, key_id))

    def record(self, phone: str, kind: str, name: str) -> bytes | None:
        row = self._db.execute("SELECT record FROM phone_records WHERE phone = ? AND kind = ? AND name = ?",
                               (phone, kind, name)).fetchone()
        return None if row is None else bytes(row[0])

    def set_record(self, phone: str, kind: str, name: str, record: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO phone_records VALUES (?, ?, ?, ?)", (phone, kind, name, record))
