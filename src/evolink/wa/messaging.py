"""Per-engine messaging state: the store and Signal ports, caches, waiters and bounded counters.

One ``Messaging`` lives as long as its ``Engine`` (across reconnects). Decryption and encryption of
1:1 and group messages are serialised by ``lock``: Signal records are read, stepped and written
back under it, so two stanzas never step the same session concurrently (whatsmeow uses one global
send lock the same way).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from evolink.wa import jids
from evolink.wa.e2e import Cipher, OwnKeys
from evolink.wa.store_port import MessageStore
from evolink.wire.binary import Node
from evolink.wire.crypto import KeyPair

if TYPE_CHECKING:
    from evolink.wa.creds import Creds

DEVICE_CACHE_TTL = 300.0  # seconds, as Baileys' userDevicesCache (DEFAULT_CACHE_TTLS.USER_DEVICES)
MAX_RETRY_RECEIPTS = 5  # retry receipts per incoming message id (Baileys maxMsgRetryCount)
MAX_RESENDS = 2  # resends per (message id, requesting device), as Baileys rc14 ends up doing
BOUNDED = 4096  # entries kept in each in-memory counter map


class BoundedCounter:
    """A counter per key that forgets its oldest keys past ``size`` (no unbounded growth)."""

    def __init__(self, size: int = BOUNDED) -> None:
        self._size = size
        self._counts: OrderedDict[str, int] = OrderedDict()

    def bump(self, key: str) -> int:
        n = self._counts.pop(key, 0) + 1
        self._counts[key] = n
        while len(self._counts) > self._size:
            self._counts.popitem(last=False)
        return n

    def get(self, key: str) -> int:
        return self._counts.get(key, 0)


class Messaging:
    def __init__(self, store: MessageStore, cipher: Cipher) -> None:
        self.store = store
        self.cipher = cipher
        self.lock = asyncio.Lock()
        self.prekey_lock = asyncio.Lock()
        self.retries = BoundedCounter()
        self.resends = BoundedCounter()
        self.lid_of: dict[str, str] = {}  # PN user JID -> LID user JID
        self.pn_of: dict[str, str] = {}
        self.skdm_sent: dict[str, set[str]] = {}  # group -> device JIDs that have our sender key
        self._device_cache: dict[str, tuple[list[str], float]] = {}
        self._acks: dict[str, asyncio.Future[Node]] = {}

    # ------------------------------------------------------------------ keys

    @staticmethod
    def own_keys(creds: Creds) -> OwnKeys:
        return OwnKeys(creds.identity_key, creds.registration_id, creds.signed_pre_key_id,
                       KeyPair(creds.signed_pre_key_private, creds.signed_pre_key_public),
                       creds.signed_pre_key_signature)

    # ------------------------------------------------------------------ LID / PN

    def learn_pair(self, pn: str | None, lid: str | None) -> None:
        if not pn or not lid or "@" not in pn or "@" not in lid:
            return
        pn_user, lid_user = jids.non_ad(pn), jids.non_ad(lid)
        if jids.is_lid(pn_user) or not jids.is_lid(lid_user):
            return
        self.lid_of[pn_user] = lid_user
        self.pn_of[lid_user] = pn_user

    def canonical(self, device: str) -> str:
        """The device JID under which its Signal session is kept: the LID form when known."""
        j = jids.parse(device)
        if j.server == jids.PN_SERVER:
            lid = self.lid_of.get(f"{j.user}@{j.server}")
            if lid is not None:
                return jids.device_jid(lid, j.device)
        return device

    def address(self, device: str) -> str:
        return jids.signal_address(self.canonical(device))

    # ------------------------------------------------------------------ device lists

    def cached_devices(self, user: str, now: float | None = None) -> list[str] | None:
        hit = self._device_cache.get(user)
        now = time.monotonic() if now is None else now
        if hit is None or now - hit[1] > DEVICE_CACHE_TTL:
            return None
        return hit[0]

    def cache_devices(self, user: str, devices: list[str], now: float | None = None) -> None:
        self._device_cache[user] = (devices, time.monotonic() if now is None else now)
        if len(self._device_cache) > BOUNDED:
            self._device_cache.pop(next(iter(self._device_cache)))

    def forget_all_devices(self) -> None:
        self._device_cache.clear()

    def forget_devices(self, user: str) -> None:
        self._device_cache.pop(user, None)
        other = self.lid_of.get(user) or self.pn_of.get(user)
        if other:
            self._device_cache.pop(other, None)

    # ------------------------------------------------------------------ server acks of our messages

    def expect_ack(self, message_id: str) -> asyncio.Future[Node]:
        future: asyncio.Future[Node] = asyncio.get_running_loop().create_future()
        self._acks[message_id] = future
        return future

    def drop_ack(self, message_id: str) -> None:
        self._acks.pop(message_id, None)

    def on_ack(self, node: Node) -> None:
        future = self._acks.pop(node.attrs.get("id", ""), None)
        if future is not None and not future.done():
            future.set_result(node)
