"""``pair-success``: verify what the phone signed, sign our part, answer ``pair-device-sign``.

Unlike Baileys (whose account-signature check is a no-op), both checks are real: the HMAC under the
ADV secret and the account signature by the primary's identity key. A failure is answered with the
same error IQ whatsmeow sends and ends the connection; nothing is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evolink.wa.connection import Connection
from evolink.wa.events import CloseReason
from evolink.wa.presence import name_at_link
from evolink.wa.stream_errors import Disconnect
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.crypto import (
    account_signature_message,
    adv_hmac_valid,
    device_signature_message,
    sign,
    verify,
)
from evolink.wire.proto import wa_pb2

if TYPE_CHECKING:
    from evolink.wa.engine import Engine

log = logging.getLogger("evolink.wa.pair_success")

_HOSTED = wa_pb2.HOSTED


class PairVerificationError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True, slots=True)
class LinkedIdentity:
    jid: str
    lid: str | None
    platform: str | None
    business_name: str | None
    account: bytes  # ADVSignedDeviceIdentity with accountSignatureKey and our device signature
    primary_identity: bytes
    key_index: int
    reply_identity: bytes  # same without accountSignatureKey (what pair-device-sign carries)
    adv_secret: bytes


def verify_pair_success(pair_success: Node, *, identity_private: bytes, identity_public: bytes,
                        adv_secrets: list[bytes]) -> LinkedIdentity:
    """Pure verification + signing; raises PairVerificationError(code, text) like whatsmeow answers."""
    di = pair_success.child("device-identity")
    device = pair_success.child("device")
    if di is None or not isinstance(di.content, bytes) or device is None or not device.attrs.get("jid"):
        raise PairVerificationError(500, "internal-error")
    try:
        container = wa_pb2.ADVSignedDeviceIdentityHMAC.FromString(di.content)
    except Exception:  # protobuf raises DecodeError (not a WireError) on garbage
        raise PairVerificationError(500, "internal-error") from None
    hosted = container.HasField("accountType") and container.accountType == _HOSTED
    secret = next((s for s in adv_secrets if adv_hmac_valid(s, container.details, container.hmac, hosted)), None)
    if secret is None:
        raise PairVerificationError(401, "hmac-mismatch")
    try:
        signed = wa_pb2.ADVSignedDeviceIdentity.FromString(container.details)
        identity = wa_pb2.ADVDeviceIdentity.FromString(signed.details)
    except Exception:
        raise PairVerificationError(500, "internal-error") from None
    account_key = signed.accountSignatureKey
    device_hosted = identity.HasField("deviceType") and identity.deviceType == _HOSTED
    if (len(account_key) != 32 or len(signed.accountSignature) != 64
            or not verify(account_key, account_signature_message(signed.details, identity_public, device_hosted),
                          signed.accountSignature)):
        raise PairVerificationError(401, "signature-mismatch")
    signed.deviceSignature = sign(identity_private,
                                  device_signature_message(signed.details, identity_public, account_key))
    account = signed.SerializeToString()
    signed.ClearField("accountSignatureKey")
    reply_identity = signed.SerializeToString()
    platform = pair_success.child("platform")
    biz = pair_success.child("biz")
    return LinkedIdentity(
        jid=device.attrs["jid"], lid=device.attrs.get("lid"),
        platform=platform.attrs.get("name") if platform else None,
        business_name=biz.attrs.get("name") if biz else None,
        account=account, primary_identity=account_key, key_index=identity.keyIndex,
        reply_identity=reply_identity, adv_secret=secret,
    )


async def handle_pair_success(engine: Engine, conn: Connection, iq: Node, pair_success: Node) -> None:
    conn.pair_success_seen = True
    engine.report_server_time(iq.attrs.get("t"), "pair-success")
    creds = conn.creds
    secrets_to_try = [creds.adv_secret]
    if conn.pairing is not None and conn.pairing.adv_secret is not None:
        secrets_to_try.insert(0, conn.pairing.adv_secret)
    iq_id = iq.attrs.get("id", "")
    try:
        linked = verify_pair_success(pair_success, identity_private=creds.identity_private,
            identity_public=creds.identity_public, adv_secrets=secrets_to_try)
    except PairVerificationError as exc:
        log.warning("pair-success refused: %s", exc.text)
        await conn.send(Node("iq", {"to": SERVER_JID, "type": "error", "id": iq_id},
                             [Node("error", {"code": str(exc.code), "text": exc.text})]))
        conn.finish(Disconnect(CloseReason.PROTOCOL, exc.code, f"pair-success refused: {exc.text}",
                               will_reconnect=True))
        return
    creds.me_jid = linked.jid
    creds.me_lid = linked.lid
    creds.platform = linked.platform
    creds.business_name = linked.business_name
    creds.account = linked.account
    creds.primary_identity = linked.primary_identity
    creds.adv_secret = linked.adv_secret
    creds.push_name = name_at_link(engine.config.push_name, creds.push_name, linked.business_name)
    await engine.save_creds(creds)
    conn.is_new_login = True
    engine.mark_new_login()
    await conn.send(Node("iq", {"to": SERVER_JID, "type": "result", "id": iq_id}, [
        Node("pair-device-sign", {}, [
            Node("device-identity", {"key-index": str(linked.key_index)}, linked.reply_identity),
        ]),
    ]))
    log.info("device linked", extra={"jid": linked.jid, "conn": conn.number})
    await engine.send_unified_session(conn)
    # The server now sends stream:error 515; the engine reconnects immediately with a login payload.
