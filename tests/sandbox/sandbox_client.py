"""A minimal Python companion for sandbox tests, built on ``evolink.wire`` (not on the engine).

It speaks just enough of the protocol to drive the server side from pytest: Noise initiator,
registration/login payloads, node send/receive, pair-device-sign. Baileys covers the real client.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import ssl
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect

from evolink.wire import binary, crypto, frames, noise
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.crypto import KeyPair
from evolink.wire.proto import wa_pb2

VERSION = (2, 3000, 1043857760)


@dataclass
class Creds:
    noise: KeyPair = field(default_factory=KeyPair.generate)
    identity: KeyPair = field(default_factory=KeyPair.generate)
    signed_prekey: KeyPair = field(default_factory=KeyPair.generate)
    registration_id: int = 77
    adv_secret: bytes = field(default_factory=lambda: os.urandom(32))
    pairing_ephemeral: KeyPair = field(default_factory=KeyPair.generate)
    phone: str | None = None
    device: int | None = None


def _user_agent() -> wa_pb2.ClientPayload.UserAgent:
    ua = wa_pb2.ClientPayload.UserAgent()
    ua.platform = wa_pb2.ClientPayload.UserAgent.WEB
    ua.appVersion.primary, ua.appVersion.secondary, ua.appVersion.tertiary = VERSION
    ua.mcc = ua.mnc = "000"
    ua.osVersion = "0.1"
    ua.device = "Desktop"
    ua.osBuildNumber = "0.1"
    ua.localeLanguageIso6391 = "en"
    ua.localeCountryIso31661Alpha2 = "US"
    return ua


def registration_payload(creds: Creds) -> bytes:
    p = wa_pb2.ClientPayload()
    p.userAgent.CopyFrom(_user_agent())
    p.webInfo.webSubPlatform = wa_pb2.ClientPayload.WebInfo.WEB_BROWSER
    p.connectType = wa_pb2.ClientPayload.WIFI_UNKNOWN
    p.connectReason = wa_pb2.ClientPayload.USER_ACTIVATED
    p.passive = False
    p.pull = False
    d = p.devicePairingData
    d.eRegid = creds.registration_id.to_bytes(4, "big")
    d.eKeytype = b"\x05"
    d.eIdent = creds.identity.public
    d.eSkeyId = (1).to_bytes(3, "big")
    d.eSkeyVal = creds.signed_prekey.public
    d.eSkeySig = crypto.signed_prekey_signature(creds.identity.private, creds.signed_prekey.public)
    d.buildHash = hashlib.md5(".".join(map(str, VERSION)).encode()).digest()
    props = wa_pb2.DeviceProps(os="pytest")
    d.deviceProps = props.SerializeToString()
    return p.SerializeToString()


def login_payload(phone: str, device: int | None) -> bytes:
    p = wa_pb2.ClientPayload()
    p.userAgent.CopyFrom(_user_agent())
    p.webInfo.webSubPlatform = wa_pb2.ClientPayload.WebInfo.WEB_BROWSER
    p.connectType = wa_pb2.ClientPayload.WIFI_UNKNOWN
    p.connectReason = wa_pb2.ClientPayload.USER_ACTIVATED
    p.username = int(phone)
    if device is not None:
        p.device = device
    p.passive = True
    p.pull = True
    return p.SerializeToString()


class Closed(Exception):
    pass


class Client:
    """One socket. ``recv()`` returns decoded nodes; raises :class:`Closed` when the server closes."""

    def __init__(self, ws: ClientConnection, creds: Creds) -> None:
        self.ws = ws
        self.creds = creds
        self._reader = frames.FrameReader()
        self._frames: collections.deque[bytes] = collections.deque()
        self.transport: noise.Transport | None = None
        self.server_static = b""
        self.cert_payload = b""
        self._ids = 0
        self.ib: list[Node] = []

    @classmethod
    async def connect(cls, url: str, creds: Creds, payload: bytes, *, routing_info: bytes | None = None) -> Client:
        ctx = None
        if url.startswith("wss:"):
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ws = await connect(url, ssl=ctx, origin="https://web.whatsapp.com", compression=None,  # type: ignore[arg-type]
                           max_size=1 << 25, open_timeout=10)
        client = cls(ws, creds)
        await client._handshake(payload, routing_info)
        return client

    async def _raw_frame(self, within: float = 10.0) -> bytes:
        while not self._frames:
            try:
                data = await asyncio.wait_for(self.ws.recv(), within)
            except Exception as exc:
                raise Closed(repr(exc)) from exc
            assert isinstance(data, bytes)
            self._frames.extend(self._reader.feed(data))
        return self._frames.popleft()

    async def _handshake(self, payload: bytes, routing_info: bytes | None) -> None:
        ini = noise.NoiseInitiator(self.creds.noise)
        await self.ws.send(frames.client_intro(routing_info) + frames.encode_frame(ini.client_hello()))
        hello = ini.read_server_hello(await self._raw_frame())
        self.server_static, self.cert_payload = hello.static, hello.cert_payload
        await self.ws.send(frames.encode_frame(ini.client_finish(payload)))
        self.transport = ini.transport()

    async def recv(self, within: float = 10.0) -> Node:
        """Next node; ``<ib>`` info broadcasts (edge routing…) are kept in ``self.ib`` instead."""
        assert self.transport is not None
        while True:
            node = binary.decode(self.transport.decrypt(await self._raw_frame(within)))
            if node.tag != "ib":
                return node
            self.ib.append(node)

    async def recv_any(self, within: float = 10.0) -> Node:
        """Next node, ``<ib>`` included (also appended to ``self.ib``)."""
        assert self.transport is not None
        node = binary.decode(self.transport.decrypt(await self._raw_frame(within)))
        if node.tag == "ib":
            self.ib.append(node)
        return node

    async def send(self, node: Node) -> None:
        assert self.transport is not None
        await self.ws.send(frames.encode_frame(self.transport.encrypt(binary.encode(node))))

    def next_id(self) -> str:
        self._ids += 1
        return f"1.1-{self._ids}"

    async def query(self, node: Node, within: float = 10.0) -> Node:
        node.attrs.setdefault("id", self.next_id())
        await self.send(node)
        while True:
            got = await self.recv(within)
            if got.attrs.get("id") == node.attrs["id"]:
                return got

    async def close(self) -> None:
        await self.ws.close()

    async def wait_closed(self, within: float = 10.0) -> None:
        await asyncio.wait_for(self.ws.wait_closed(), within)


def iq(xmlns: str, kind: str, children: list[Node] | None = None) -> Node:
    return Node("iq", {"to": SERVER_JID, "type": kind, "xmlns": xmlns}, children)


def pair_device_sign(creds: Creds, pair_success: Node) -> Node:
    """Verify pair-success like a client and build the ``pair-device-sign`` reply."""
    ps = pair_success.child("pair-success")
    assert ps is not None
    ident = ps.child("device-identity")
    assert ident is not None and isinstance(ident.content, bytes)
    container = wa_pb2.ADVSignedDeviceIdentityHMAC.FromString(ident.content)
    assert crypto.adv_hmac_valid(creds.adv_secret, container.details, container.hmac), "bad ADV HMAC"
    signed = wa_pb2.ADVSignedDeviceIdentity.FromString(container.details)
    assert crypto.verify(
        signed.accountSignatureKey,
        crypto.account_signature_message(signed.details, creds.identity.public),
        signed.accountSignature,
    ), "bad account signature"
    details = wa_pb2.ADVDeviceIdentity.FromString(signed.details)
    signed.deviceSignature = crypto.sign(
        creds.identity.private,
        crypto.device_signature_message(signed.details, creds.identity.public, signed.accountSignatureKey),
    )
    signed.ClearField("accountSignatureKey")
    device = ps.child("device")
    assert device is not None
    jid = device.attrs["jid"]
    creds.phone = jid.split(":")[0]
    creds.device = int(jid.split(":")[1].split("@")[0])
    return Node("iq", {"to": SERVER_JID, "type": "result", "id": pair_success.attrs["id"]}, [
        Node("pair-device-sign", {}, [
            Node("device-identity", {"key-index": str(details.keyIndex)}, signed.SerializeToString())
        ])
    ])


def prekey_upload(creds: Creds, key_ids: range) -> Node:
    """A complete ``encrypt`` upload as clients send it: registration, type, identity, keys, skey."""
    keys = [Node("key", {}, [Node("id", {}, i.to_bytes(3, "big")), Node("value", {}, KeyPair.generate().public)])
            for i in key_ids]
    spk = creds.signed_prekey.public
    return iq("encrypt", "set", [
        Node("registration", {}, creds.registration_id.to_bytes(4, "big")),
        Node("type", {}, b"\x05"),
        Node("identity", {}, creds.identity.public),
        Node("list", {}, keys),
        Node("skey", {}, [Node("id", {}, (1).to_bytes(3, "big")), Node("value", {}, spk),
                          Node("signature", {}, crypto.signed_prekey_signature(creds.identity.private, spk))]),
    ])
