"""Accounts and devices across the two JID namespaces (PN ``…@s.whatsapp.net`` and LID ``…@lid``).

Every account (phone) has one PN user and one LID user; its devices are the phone itself (device
0) and each linked companion (1, 2, … never reused). A device exists in both namespaces with the
same number: ``pn:7@s.whatsapp.net`` ⇔ ``lid:7@lid``. Device 0 is written without ``:0``.
"""

from __future__ import annotations

from dataclasses import dataclass

from evolink.sandbox.store import SandboxStore
from evolink.wire.binary import Jid
from evolink.wire.errors import WireError

PN_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
GROUP_SERVER = "g.us"
USER_SERVERS = (PN_SERVER, LID_SERVER, "c.us")


@dataclass(frozen=True, slots=True)
class Address:
    """One device of one account, and the namespace a JID named it in."""

    phone: str
    lid: str
    device: int
    lid_form: bool  # the JID was a LID one

    def jid(self, lid_form: bool | None = None, *, with_device: bool = True) -> str:
        use_lid = self.lid_form if lid_form is None else lid_form
        user, server = (self.lid, LID_SERVER) if use_lid else (self.phone, PN_SERVER)
        if with_device and self.device:
            return f"{user}:{self.device}@{server}"
        return f"{user}@{server}"

    @property
    def user_jid(self) -> str:
        return self.jid(with_device=False)

    @property
    def alternate_user_jid(self) -> str:
        return self.jid(not self.lid_form, with_device=False)

    def with_form(self, lid_form: bool) -> Address:
        return Address(self.phone, self.lid, self.device, lid_form)

    def at(self, device: int) -> Address:
        return Address(self.phone, self.lid, device, self.lid_form)


def parse_jid(text: str | None) -> Jid | None:
    if not text or len(text) > 256:
        return None
    try:
        return Jid.parse(text)
    except WireError:
        return None


class Directory:
    def __init__(self, store: SandboxStore) -> None:
        self._store = store

    def resolve(self, text: str | None) -> Address | None:
        """The device a user/device JID names (device 0 for a bare user), or None if unknown."""
        jid = parse_jid(text)
        if jid is None or jid.server not in USER_SERVERS or jid.agent or not jid.user.isdigit():
            return None
        if jid.server == LID_SERVER:
            phone = self._store.phone_by_lid(jid.user)
            if phone is None:
                return None
            return Address(phone, jid.user, jid.device, True)
        record = self._store.get_phone(jid.user)
        if record is None:
            return None
        return Address(record.phone, record.lid, jid.device, False)

    def account(self, phone: str, lid_form: bool = False) -> Address | None:
        record = self._store.get_phone(phone)
        return None if record is None else Address(record.phone, record.lid, 0, lid_form)

    def devices(self, phone: str) -> list[tuple[int, int]]:
        """(device, key_index) of every device of the account: the phone (0, 0), then companions."""
        return [(0, 0)] + [(d.device, d.key_index) for d in self._store.list_devices(phone)]

    def exists(self, addr: Address) -> bool:
        return addr.device == 0 or self._store.get_device(addr.phone, addr.device) is not None
