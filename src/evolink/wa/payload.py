"""ClientPayload for the Noise ClientFinish: registration (new device) or login (stored creds)."""

from __future__ import annotations

from evolink.wa.config import EngineConfig
from evolink.wa.creds import Creds
from evolink.wire.binary import Jid
from evolink.wire.errors import WireError
from evolink.wire.proto import wa_pb2

_CP = wa_pb2.ClientPayload


class PayloadError(ValueError):
    """Stored creds cannot produce a login payload (e.g. a malformed own JID)."""


def _base(config: EngineConfig) -> wa_pb2.ClientPayload:
    p = _CP()
    ua = p.userAgent
    ua.platform = _CP.UserAgent.WEB
    primary, secondary, tertiary = config.version
    ua.appVersion.primary = primary
    ua.appVersion.secondary = secondary
    ua.appVersion.tertiary = tertiary
    ua.mcc = "000"
    ua.mnc = "000"
    ua.osVersion = "0.1"
    ua.device = "Desktop"
    ua.osBuildNumber = "0.1"
    ua.releaseChannel = _CP.UserAgent.RELEASE
    ua.localeLanguageIso6391 = "en"
    ua.localeCountryIso31661Alpha2 = config.country_code
    p.webInfo.webSubPlatform = _CP.WebInfo.WEB_BROWSER
    p.connectType = _CP.WIFI_UNKNOWN
    p.connectReason = _CP.USER_ACTIVATED
    if config.push_name:
        p.pushName = config.push_name
    return p


def device_props(config: EngineConfig) -> bytes:
    props = wa_pb2.DeviceProps()
    props.os = config.browser_os
    props.version.primary = 10
    props.version.secondary = 15
    props.version.tertiary = 7
    props.platformType = config.platform_type  # type: ignore[assignment]
    props.requireFullSync = False
    h = props.historySyncConfig
    h.storageQuotaMb = 10240
    h.inlineInitialPayloadInE2EeMsg = True
    h.supportBotUserAgentChatHistory = True
    h.supportCagReactionsAndPolls = True
    h.supportBizHostedMsg = True
    h.supportRecentSyncChunkMessageCountTuning = True
    h.supportHostedGroupMsg = True
    h.supportFbidBotChatHistory = True
    h.supportMessageAssociation = True
    return props.SerializeToString()


def registration_payload(creds: Creds, config: EngineConfig) -> bytes:
    p = _base(config)
    p.passive = False
    p.pull = False
    reg = p.devicePairingData
    reg.eRegid = creds.registration_id.to_bytes(4, "big")
    reg.eKeytype = b"\x05"
    reg.eIdent = creds.identity_public
    reg.eSkeyId = creds.signed_pre_key_id.to_bytes(3, "big")
    reg.eSkeyVal = creds.signed_pre_key_public
    reg.eSkeySig = creds.signed_pre_key_signature
    reg.buildHash = config.build_hash
    reg.deviceProps = device_props(config)
    return p.SerializeToString()


def login_payload(creds: Creds, config: EngineConfig) -> bytes:
    if creds.me_jid is None:
        raise PayloadError("creds have no own JID; the device is not linked")
    try:
        jid = Jid.parse(creds.me_jid)
        username = int(jid.user)
    except (WireError, ValueError) as exc:
        raise PayloadError(f"own JID {creds.me_jid!r} is malformed: {exc}") from None
    p = _base(config)
    p.username = username
    p.device = jid.device
    p.passive = True
    p.pull = True
    p.lidDbMigrated = False
    return p.SerializeToString()
