"""Pure pieces of the linking/login flows: payloads, pair-success verification, pre-key nodes."""

from __future__ import annotations

import os

import pytest

from evolink.wa import prekeys
from evolink.wa.config import EngineConfig
from evolink.wa.creds import Creds
from evolink.wa.pair_code import InvalidPhoneNumber, mask, normalize_phone
from evolink.wa.pair_success import PairVerificationError, verify_pair_success
from evolink.wa.payload import PayloadError, login_payload, registration_payload
from evolink.wire.binary import Node
from evolink.wire.crypto import (
    KeyPair,
    account_signature_message,
    adv_hmac,
    device_signature_message,
    sign,
    verify,
)
from evolink.wire.proto import wa_pb2


def test_registration_payload_carries_signed_identity() -> None:
    creds = Creds.new()
    cfg = EngineConfig(push_name="bot", browser_name="Firefox", browser_os="Linux")
    p = wa_pb2.ClientPayload.FromString(registration_payload(creds, cfg))
    assert not p.passive and not p.pull and not p.HasField("username")
    assert p.pushName == "bot" and p.userAgent.platform == wa_pb2.ClientPayload.UserAgent.WEB
    reg = p.devicePairingData
    assert reg.eIdent == creds.identity_public and reg.eSkeyId == b"\x00\x00\x01"
    assert int.from_bytes(reg.eRegid, "big") == creds.registration_id
    assert verify(reg.eIdent, b"\x05" + reg.eSkeyVal, reg.eSkeySig)
    assert reg.buildHash == cfg.build_hash
    props = wa_pb2.DeviceProps.FromString(reg.deviceProps)
    assert props.os == "Linux" and props.platformType == 2  # FIREFOX


def test_login_payload_from_creds() -> None:
    creds = Creds.new()
    with pytest.raises(PayloadError):
        login_payload(creds, EngineConfig())
    creds.me_jid = "15550001111:7@s.whatsapp.net"
    p = wa_pb2.ClientPayload.FromString(login_payload(creds, EngineConfig()))
    assert (p.username, p.device, p.passive, p.pull) == (15550001111, 7, True, True)
    assert not p.HasField("devicePairingData")
    creds.me_jid = "not-a-jid"
    with pytest.raises(PayloadError):
        login_payload(creds, EngineConfig())


def _pair_success(creds: Creds, adv_secret: bytes, account: KeyPair, *, forge_account_sig: bool = False) -> Node:
    ident = wa_pb2.ADVDeviceIdentity(rawId=1, timestamp=1_700_000_000, keyIndex=3)
    details = ident.SerializeToString()
    signed = wa_pb2.ADVSignedDeviceIdentity(details=details, accountSignatureKey=account.public)
    signed.accountSignature = (os.urandom(64) if forge_account_sig
                               else sign(account.private, account_signature_message(details, creds.identity_public)))
    inner = signed.SerializeToString()
    container = wa_pb2.ADVSignedDeviceIdentityHMAC(details=inner, hmac=adv_hmac(adv_secret, inner))
    return Node("pair-success", {}, [
        Node("device-identity", {}, container.SerializeToString()),
        Node("platform", {"name": "android"}),
        Node("device", {"jid": "15550001111:3@s.whatsapp.net", "lid": "999:3@lid"}),
    ])


def test_pair_success_verified_and_device_signature_produced() -> None:
    creds = Creds.new()
    account = KeyPair.generate()
    node = _pair_success(creds, creds.adv_secret, account)
    linked = verify_pair_success(node, identity_private=creds.identity_private,
                                 identity_public=creds.identity_public, adv_secrets=[os.urandom(32), creds.adv_secret])
    assert linked.jid == "15550001111:3@s.whatsapp.net" and linked.lid == "999:3@lid" and linked.key_index == 3
    assert linked.adv_secret == creds.adv_secret and linked.platform == "android"
    stored = wa_pb2.ADVSignedDeviceIdentity.FromString(linked.account)
    assert stored.accountSignatureKey == account.public
    assert verify(creds.identity_public,
                  device_signature_message(stored.details, creds.identity_public, account.public),
                  stored.deviceSignature)
    reply = wa_pb2.ADVSignedDeviceIdentity.FromString(linked.reply_identity)
    assert not reply.HasField("accountSignatureKey") and reply.deviceSignature == stored.deviceSignature


def test_pair_success_wrong_hmac_refused() -> None:
    creds = Creds.new()
    node = _pair_success(creds, os.urandom(32), KeyPair.generate())
    with pytest.raises(PairVerificationError) as info:
        verify_pair_success(node, identity_private=creds.identity_private,
                            identity_public=creds.identity_public, adv_secrets=[creds.adv_secret])
    assert (info.value.code, info.value.text) == (401, "hmac-mismatch")


def test_pair_success_forged_account_signature_refused() -> None:
    creds = Creds.new()
    node = _pair_success(creds, creds.adv_secret, KeyPair.generate(), forge_account_sig=True)
    with pytest.raises(PairVerificationError) as info:
        verify_pair_success(node, identity_private=creds.identity_private,
                            identity_public=creds.identity_public, adv_secrets=[creds.adv_secret])
    assert (info.value.code, info.value.text) == (401, "signature-mismatch")


@pytest.mark.parametrize("bad", [
    Node("pair-success", {}, []),
    Node("pair-success", {}, [Node("device-identity", {}, b"\xff\xff garbage"), Node("device", {"jid": "1@s"})]),
])
def test_pair_success_malformed_refused(bad: Node) -> None:
    creds = Creds.new()
    with pytest.raises(PairVerificationError):
        verify_pair_success(bad, identity_private=creds.identity_private,
                            identity_public=creds.identity_public, adv_secrets=[creds.adv_secret])


def test_prekey_upload_node_and_ids() -> None:
    creds = Creds.new()
    creds.next_pre_key_id = prekeys.MAX_PRE_KEY_ID  # wraps inside 24 bits
    keys = prekeys.generate(creds, 3)
    assert [k for k, _ in keys] == [prekeys.MAX_PRE_KEY_ID, 1, 2]
    node = prekeys.upload_node(creds, keys)
    assert node.attrs["xmlns"] == "encrypt" and node.attrs["type"] == "set"
    listed = node.child("list")
    assert listed is not None and len(listed.children("key")) == 3
    skey = node.child("skey")
    assert skey is not None and skey.child("signature").content == creds.signed_pre_key_signature  # type: ignore[union-attr]
    assert prekeys.parse_count(Node("iq", {}, [Node("count", {"value": "4"})])) == 4
    with pytest.raises(ValueError):
        prekeys.parse_count(Node("iq", {}, []))


def test_phone_normalisation_and_masking() -> None:
    assert normalize_phone("+1 (555) 000-1111") == "15550001111"
    for bad in ("12345", "015550001111", "1234567890123456"):
        with pytest.raises(InvalidPhoneNumber):
            normalize_phone(bad)
    assert mask("ABCD1234") == "******34"


def test_server_certificate_memo_still_checks_the_clock() -> None:
    from evolink.wa.handshake import _VERIFIED, check_server_certificate
    from evolink.wire.certs import build_cert_chain
    from evolink.wire.errors import CertificateError

    root, inter, leaf = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    chain = build_cert_chain(root, inter, leaf.public, not_before=1000, not_after=2000)
    with pytest.raises(CertificateError) as wrong:
        check_server_certificate(chain, server_static=leaf.public, root_public_key=os.urandom(32), now=1500,
                                 tolerance=0)
    assert wrong.value.check == "root_signature"
    info = check_server_certificate(chain, server_static=leaf.public, root_public_key=root.public, now=1500,
                                    tolerance=0)
    assert (chain, leaf.public, root.public) in _VERIFIED and info.leaf.key == leaf.public
    assert check_server_certificate(chain, server_static=leaf.public, root_public_key=root.public, now=2030,
                                    tolerance=60) == info
    with pytest.raises(CertificateError) as expired:
        check_server_certificate(chain, server_static=leaf.public, root_public_key=root.public, now=2100,
                                 tolerance=60)
    assert expired.value.check == "intermediate_validity"
    with pytest.raises(CertificateError) as early:
        check_server_certificate(chain, server_static=leaf.public, root_public_key=root.public, now=900,
                                 tolerance=0)
    assert early.value.check == "intermediate_validity"
    with pytest.raises(CertificateError) as other_static:
        check_server_certificate(chain, server_static=os.urandom(32), root_public_key=root.public, now=1500,
                                 tolerance=0)
    assert other_static.value.check == "leaf_key"
