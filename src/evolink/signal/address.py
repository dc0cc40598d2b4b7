"""Signal protocol addresses and sender-key names, mapped from JIDs exactly as Baileys does.

Addresses are local storage keys only (never on the wire). Baileys 7.0.0-rc14
``jidToSignalProtocolAddress`` (``lib/Signal/libsignal.js``) with ``jidDecode``
(``lib/WABinary/jid-utils.js``):

- ``user[_agent][:device]@server`` is split at ``@``, then ``:`` (device), then ``_`` (agent);
- the *domain type* is 1 for ``lid``, 128 for ``hosted``, 129 for ``hosted.lid``, else the numeric
  agent if there is one, else 0 (``s.whatsapp.net``);
- the address name is ``user`` for domain 0 and ``user_<domain>`` otherwise; the device id is the
  device (0 when absent);
- device 99 is only valid on ``hosted`` / ``hosted.lid`` (Baileys throws otherwise, so do we).

``str(address)`` is libsignal's ``name.device``; a sender-key name prints as Baileys'
``group::name::device``.
"""

from __future__ import annotations

from dataclasses import dataclass

from evolink.signal.errors import InvalidAddress

DOMAIN_WHATSAPP = 0
DOMAIN_LID = 1
DOMAIN_HOSTED = 128
DOMAIN_HOSTED_LID = 129
HOSTED_DEVICE = 99

_SERVER_DOMAINS = {"lid": DOMAIN_LID, "hosted": DOMAIN_HOSTED, "hosted.lid": DOMAIN_HOSTED_LID}


@dataclass(frozen=True, slots=True)
class ProtocolAddress:
    """A Signal address: ``name`` (the JID user, plus ``_<domain>`` outside PN) and ``device_id``."""

    name: str
    device_id: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "." in self.name:
            raise InvalidAddress(f"address name must be a non-empty string without '.': {self.name!r}")
        if not isinstance(self.device_id, int) or isinstance(self.device_id, bool) or self.device_id < 0:
            raise InvalidAddress(f"address device id must be an int >= 0: {self.device_id!r}")

    def __str__(self) -> str:
        return f"{self.name}.{self.device_id}"

    @classmethod
    def parse(cls, encoded: str) -> ProtocolAddress:
        """Inverse of ``str()``: ``"123_1.4"`` → ``ProtocolAddress("123_1", 4)``."""
        if not isinstance(encoded, str):
            raise InvalidAddress(f"encoded address must be a str, got {type(encoded).__name__}")
        name, sep, device = encoded.rpartition(".")
        if not sep or not device.isdigit() or not device.isascii():
            raise InvalidAddress(f"not a 'name.device' address: {encoded!r}")
        return cls(name, int(device))

    @classmethod
    def from_jid(cls, jid: str) -> ProtocolAddress:
        """Baileys' ``jidToSignalProtocolAddress``: PN → ``user``, LID → ``user_1``, hosted → ``user_128``."""
        return jid_to_address(jid)


def jid_to_address(jid: str) -> ProtocolAddress:
    """Map a (device) JID to its Signal address; see the module docstring for the rule."""
    if not isinstance(jid, str) or "@" not in jid:
        raise InvalidAddress(f"not a JID: {jid!r}")
    user_combined, _, server = jid.partition("@")
    user_agent, _, device_s = user_combined.partition(":")
    user, _, agent = user_agent.partition("_")
    if not user:
        raise InvalidAddress(f"JID has an empty user: {jid!r}")
    domain = _SERVER_DOMAINS.get(server)
    if domain is None:
        if agent:
            if not agent.isdigit() or not agent.isascii():
                raise InvalidAddress(f"JID agent is not a number: {jid!r}")
            domain = int(agent)
        else:
            domain = DOMAIN_WHATSAPP
    if device_s:
        if not device_s.isdigit() or not device_s.isascii():
            raise InvalidAddress(f"JID device is not a number: {jid!r}")
        device = int(device_s)
    else:
        device = 0
    if device == HOSTED_DEVICE and server not in ("hosted", "hosted.lid"):
        raise InvalidAddress(f"device 99 outside hosted servers: {jid!r}")
    name = user if domain == DOMAIN_WHATSAPP else f"{user}_{domain}"
    return ProtocolAddress(name, device)


@dataclass(frozen=True, slots=True)
class SenderKeyName:
    """Names one sender-key record: the group JID and the sending device's address."""

    group_id: str
    sender: ProtocolAddress

    def __post_init__(self) -> None:
        if not isinstance(self.group_id, str) or not self.group_id:
            raise InvalidAddress(f"group id must be a non-empty string: {self.group_id!r}")
        if not isinstance(self.sender, ProtocolAddress):
            raise InvalidAddress("sender must be a ProtocolAddress")

    def __str__(self) -> str:
        return f"{self.group_id}::{self.sender.name}::{self.sender.device_id}"

    @classmethod
    def from_jids(cls, group_jid: str, sender_jid: str) -> SenderKeyName:
        """Baileys' ``jidToSignalSenderKeyName(group, user)``."""
        return cls(group_jid, jid_to_address(sender_jid))
