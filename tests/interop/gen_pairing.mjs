// Pairing-code, link_code_companion_reg, ADV and QR vectors, computed with Baileys' own exported
// helpers in the same composition Baileys uses in Socket/socket.ts (requestPairingCode,
// generatePairingKey), Socket/messages-recv.ts (link_code_companion_reg handling) and
// Utils/validate-connection.ts (configureSuccessfulPairing).
import assert from 'node:assert/strict';
import {
    aesDecryptCTR,
    aesDecryptGCM,
    aesEncryptCTR,
    aesEncryptGCM,
    buildPairingQRData,
    bytesToCrockford,
    configureSuccessfulPairing,
    Curve,
    derivePairingCodeKey,
    encodeBinaryNode,
    hkdf,
    hmacSign,
    proto,
    S_WHATSAPP_NET
} from 'baileys';

import { b64, hex, keyPairFrom, Rng } from './vectors_common.mjs';

const KEY_BUNDLE_INFO = 'link_code_pairing_key_bundle_encryption_key';
const ADV_SECRET_INFO = 'adv_secret';
const ACCOUNT_SIG_PREFIX = Buffer.from([6, 0]);
const DEVICE_SIG_PREFIX = Buffer.from([6, 1]);
const HOSTED_ACCOUNT_SIG_PREFIX = Buffer.from([6, 5]);

/** Baileys' generatePairingKey with the random salt/iv made explicit. */
const wrapEphemeral = async (code, pub, salt, iv) => {
    const key = await derivePairingCodeKey(code, salt);
    return { key, wrapped: Buffer.concat([salt, iv, aesEncryptCTR(pub, key, iv)]) };
};

/** Baileys' decipherLinkPublicKey. */
const unwrapEphemeral = async (code, wrapped) => {
    const key = await derivePairingCodeKey(code, wrapped.subarray(0, 32));
    return aesDecryptCTR(wrapped.subarray(48, 80), key, wrapped.subarray(32, 48));
};

const kpJson = (kp) => ({ private: hex(kp.private), public: hex(kp.public) });

const codeVectors = (rng) => {
    const inputs = [
        Buffer.alloc(5, 0x00),
        Buffer.alloc(5, 0xff),
        Buffer.from([0x01, 0x23, 0x45, 0x67, 0x89]),
        Buffer.from([0x80, 0x00, 0x00, 0x00, 0x01]),
        Buffer.from([0x84, 0x21, 0x08, 0x42, 0x10])
    ];
    while (inputs.length < 32) inputs.push(rng.bytes(5));
    return inputs.map((b) => ({ input: hex(b), code: bytesToCrockford(b) }));
};

const hmacVectors = (rng) => {
    const out = [];
    for (let i = 0; i < 12; i++) {
        const secret = rng.bytes(32);
        const details = rng.bytes(1 + rng.int(200));
        const hosted = i % 2 === 1;
        const prefix = hosted ? HOSTED_ACCOUNT_SIG_PREFIX : Buffer.alloc(0);
        out.push({
            adv_secret: hex(secret),
            details: hex(details),
            hosted,
            hmac: hex(hmacSign(Buffer.concat([prefix, details]), secret))
        });
    }
    return out;
};

const hkdfVectors = (rng) => {
    const out = [];
    const infos = [KEY_BUNDLE_INFO, ADV_SECRET_INFO, ''];
    for (let i = 0; i < 9; i++) {
        const ikm = rng.bytes(32 + rng.int(64));
        const withSalt = i % 3 !== 2;
        const salt = withSalt ? rng.bytes(32) : undefined;
        const info = infos[i % infos.length];
        const length = [32, 64, 80][i % 3];
        out.push({
            ikm: hex(ikm),
            salt: salt ? hex(salt) : null,
            info,
            length,
            okm: hex(Buffer.from(hkdf(ikm, length, salt ? { salt, info } : { info })))
        });
    }
    return out;
};

/** A full ADV identity signed by the primary, wrapped in the HMAC container, plus Baileys' reply. */
const advCase = (name, { hosted, primaryIdentity, companionIdentity, advSecret, rawId, timestamp, keyIndex, device }) => {
    const identity = { rawId, timestamp, keyIndex };
    if (hosted) {
        identity.accountType = proto.ADVEncryptionType.HOSTED;
        identity.deviceType = proto.ADVEncryptionType.HOSTED;
    }
    const deviceDetails = Buffer.from(proto.ADVDeviceIdentity.encode(identity).finish());
    const accountPrefix = hosted ? HOSTED_ACCOUNT_SIG_PREFIX : ACCOUNT_SIG_PREFIX;
    const accountMsg = Buffer.concat([accountPrefix, deviceDetails, companionIdentity.public]);
    const accountSignature = Buffer.from(Curve.sign(primaryIdentity.private, accountMsg));
    const signed = Buffer.from(
        proto.ADVSignedDeviceIdentity.encode({
            details: deviceDetails,
            accountSignatureKey: primaryIdentity.public,
            accountSignature
        }).finish()
    );
    const hmacPrefix = hosted ? HOSTED_ACCOUNT_SIG_PREFIX : Buffer.alloc(0);
    const hmac = hmacSign(Buffer.concat([hmacPrefix, signed]), advSecret);
    const container = { details: signed, hmac };
    if (hosted) container.accountType = proto.ADVEncryptionType.HOSTED;
    const containerBytes = Buffer.from(proto.ADVSignedDeviceIdentityHMAC.encode(container).finish());

    const stanza = {
        tag: 'iq',
        attrs: { from: S_WHATSAPP_NET, type: 'set', id: '2891.44071-7', xmlns: 'md', t: String(timestamp) },
        content: [
            {
                tag: 'pair-success',
                attrs: {},
                content: [
                    { tag: 'device-identity', attrs: {}, content: containerBytes },
                    { tag: 'platform', attrs: { name: hosted ? 'smba' : 'android' } },
                    { tag: 'device', attrs: { jid: device.jid, lid: device.lid } },
                    ...(hosted ? [{ tag: 'biz', attrs: { name: 'Evolink Test Biz' } }] : [])
                ]
            }
        ]
    };
    // Baileys' own handler: checks the HMAC (real check) and signs the device signature.
    const { reply, creds } = configureSuccessfulPairing(stanza, {
        advSecretKey: b64(advSecret),
        signedIdentityKey: companionIdentity,
        signalIdentities: []
    });
    const deviceSignature = Buffer.from(creds.account.deviceSignature);
    const deviceMsg = Buffer.concat([DEVICE_SIG_PREFIX, deviceDetails, companionIdentity.public, primaryIdentity.public]);
    const replyIdentity = Buffer.from(reply.content[0].content[0].content);
    return {
        vector: {
            name,
            hosted,
            adv_secret: hex(advSecret),
            device_identity: { raw_id: rawId, timestamp, key_index: keyIndex },
            device_identity_details: hex(deviceDetails),
            account_signature_key: hex(primaryIdentity.public),
            account_signature_message: hex(accountMsg),
            account_signature: hex(accountSignature),
            signed_device_identity: hex(signed),
            hmac: hex(hmac),
            hmac_container: hex(containerBytes),
            companion_identity_public: hex(companionIdentity.public),
            device_signature_message: hex(deviceMsg),
            device_signature: hex(deviceSignature),
            reply_device_identity: hex(replyIdentity),
            reply_key_index: reply.content[0].content[0].attrs['key-index'],
            pair_success_encoded: b64(encodeBinaryNode(stanza)),
            reply_encoded: b64(encodeBinaryNode(reply))
        },
        stanzas: [
            { name: `${name}_pair_success`, node: stanza },
            { name: `${name}_pair_device_sign_reply`, node: reply }
        ]
    };
};

export const pairingVectors = async () => {
    const rng = new Rng('evolink-interop-pairing-v1');
    const companion = {
        noise: keyPairFrom(rng.bytes(32)),
        identity: keyPairFrom(rng.bytes(32)),
        ephemeral: keyPairFrom(rng.bytes(32))
    };
    const primary = { identity: keyPairFrom(rng.bytes(32)), ephemeral: keyPairFrom(rng.bytes(32)) };
    const code = bytesToCrockford(Buffer.from('a1b2c3d4e5', 'hex'));
    const phone = '15550001111';
    const ref = Buffer.from('2@q9Xf3kLpZr0tYvW8nM1bC5dE7gH2jK4sU6wA0yB3cD5eF7gH9iJ1kL3mN5oP7qR9', 'utf8');

    // companion_hello: companion wraps its ephemeral public key with the code
    const cSalt = rng.bytes(32);
    const cIv = rng.bytes(16);
    const companionWrap = await wrapEphemeral(code, companion.ephemeral.public, cSalt, cIv);
    assert.deepEqual(await unwrapEphemeral(code, companionWrap.wrapped), companion.ephemeral.public);

    // primary_hello: the phone wraps its ephemeral the same way; the companion unwraps it
    const pSalt = rng.bytes(32);
    const pIv = rng.bytes(16);
    const primaryWrap = await wrapEphemeral(code, primary.ephemeral.public, pSalt, pIv);
    const unwrappedPrimary = await unwrapEphemeral(code, primaryWrap.wrapped);
    assert.deepEqual(unwrappedPrimary, primary.ephemeral.public);

    // companion_finish, as in messages-recv (randoms made explicit)
    const ephShared = Curve.sharedKey(companion.ephemeral.private, unwrappedPrimary);
    const advRandom = rng.bytes(32);
    const bundleSalt = rng.bytes(32);
    const bundleNonce = rng.bytes(12);
    const bundleKey = Buffer.from(hkdf(ephShared, 32, { salt: bundleSalt, info: KEY_BUNDLE_INFO }));
    const bundle = Buffer.concat([companion.identity.public, primary.identity.public, advRandom]);
    const encrypted = aesEncryptGCM(bundle, bundleKey, bundleNonce, Buffer.alloc(0));
    const wrappedBundle = Buffer.concat([bundleSalt, bundleNonce, encrypted]);
    const identShared = Curve.sharedKey(companion.identity.private, primary.identity.public);
    const advSecret = Buffer.from(hkdf(Buffer.concat([ephShared, identShared, advRandom]), 32, { info: ADV_SECRET_INFO }));
    assert.equal(wrappedBundle.length, 156);

    // the phone's side must reach the same bundle key and ADV secret
    const phoneEphShared = Curve.sharedKey(primary.ephemeral.private, companion.ephemeral.public);
    assert.deepEqual(phoneEphShared, ephShared);
    const phoneKey = Buffer.from(hkdf(phoneEphShared, 32, { salt: bundleSalt, info: KEY_BUNDLE_INFO }));
    assert.deepEqual(aesDecryptGCM(encrypted, phoneKey, bundleNonce, Buffer.alloc(0)), bundle);
    assert.deepEqual(Curve.sharedKey(primary.identity.private, companion.identity.public), identShared);

    const linkCode = {
        code,
        code_input: 'a1b2c3d4e5',
        phone,
        pairing_ref: b64(ref),
        companion_noise: kpJson(companion.noise),
        companion_identity: kpJson(companion.identity),
        companion_ephemeral: kpJson(companion.ephemeral),
        primary_identity: kpJson(primary.identity),
        primary_ephemeral: kpJson(primary.ephemeral),
        companion_wrap: { salt: hex(cSalt), iv: hex(cIv), key: hex(companionWrap.key), wrapped: hex(companionWrap.wrapped) },
        primary_wrap: { salt: hex(pSalt), iv: hex(pIv), key: hex(primaryWrap.key), wrapped: hex(primaryWrap.wrapped) },
        ephemeral_shared: hex(ephShared),
        identity_shared: hex(identShared),
        adv_random: hex(advRandom),
        bundle_salt: hex(bundleSalt),
        bundle_nonce: hex(bundleNonce),
        bundle_key: hex(bundleKey),
        bundle: hex(bundle),
        wrapped_bundle: hex(wrappedBundle),
        adv_secret: hex(advSecret)
    };

    // more PBKDF2 + CTR wraps with other codes (each PBKDF2 is 131072 rounds, so keep it small)
    const wraps = [];
    for (let i = 0; i < 4; i++) {
        const c = bytesToCrockford(rng.bytes(5));
        const pub = keyPairFrom(rng.bytes(32)).public;
        const salt = rng.bytes(32);
        const iv = i === 3 ? Buffer.from('ffffffffffffffffffffffffffffffff', 'hex') : rng.bytes(16); // counter wrap
        const w = await wrapEphemeral(c, pub, salt, iv);
        wraps.push({ code: c, public: hex(pub), salt: hex(salt), iv: hex(iv), key: hex(w.key), wrapped: hex(w.wrapped) });
    }

    const jid = `${phone}@s.whatsapp.net`;
    const stanzas = [
        {
            name: 'link_code_companion_hello',
            node: {
                tag: 'iq',
                attrs: { to: S_WHATSAPP_NET, type: 'set', id: '51234.6789-3', xmlns: 'md' },
                content: [
                    {
                        tag: 'link_code_companion_reg',
                        attrs: { jid, stage: 'companion_hello', should_show_push_notification: 'true' },
                        content: [
                            { tag: 'link_code_pairing_wrapped_companion_ephemeral_pub', attrs: {}, content: companionWrap.wrapped },
                            { tag: 'companion_server_auth_key_pub', attrs: {}, content: companion.noise.public },
                            { tag: 'companion_platform_id', attrs: {}, content: '1' },
                            { tag: 'companion_platform_display', attrs: {}, content: 'Chrome (Mac OS)' },
                            { tag: 'link_code_pairing_nonce', attrs: {}, content: '0' }
                        ]
                    }
                ]
            }
        },
        {
            name: 'link_code_companion_hello_result',
            node: {
                tag: 'iq',
                attrs: { from: S_WHATSAPP_NET, type: 'result', id: '51234.6789-3' },
                content: [
                    {
                        tag: 'link_code_companion_reg',
                        attrs: {},
                        content: [{ tag: 'link_code_pairing_ref', attrs: {}, content: ref }]
                    }
                ]
            }
        },
        {
            name: 'link_code_primary_hello',
            node: {
                tag: 'notification',
                attrs: { from: S_WHATSAPP_NET, type: 'link_code_companion_reg', id: '3518727744', t: '1764312000' },
                content: [
                    {
                        tag: 'link_code_companion_reg',
                        attrs: { stage: 'primary_hello' },
                        content: [
                            { tag: 'link_code_pairing_wrapped_primary_ephemeral_pub', attrs: {}, content: primaryWrap.wrapped },
                            { tag: 'primary_identity_pub', attrs: {}, content: primary.identity.public },
                            { tag: 'link_code_pairing_ref', attrs: {}, content: ref }
                        ]
                    }
                ]
            }
        },
        {
            name: 'link_code_companion_finish',
            node: {
                tag: 'iq',
                attrs: { to: S_WHATSAPP_NET, type: 'set', id: '51234.6789-4', xmlns: 'md' },
                content: [
                    {
                        tag: 'link_code_companion_reg',
                        attrs: { jid, stage: 'companion_finish' },
                        content: [
                            { tag: 'link_code_pairing_wrapped_key_bundle', attrs: {}, content: wrappedBundle },
                            { tag: 'companion_identity_public', attrs: {}, content: companion.identity.public },
                            { tag: 'link_code_pairing_ref', attrs: {}, content: ref }
                        ]
                    }
                ]
            }
        }
    ];

    const adv = [];
    const advBase = {
        primaryIdentity: primary.identity,
        companionIdentity: companion.identity,
        advSecret,
        device: { jid: `${phone}:7@s.whatsapp.net`, lid: '987654321012345:7@lid' }
    };
    for (const [name, hosted, rawId, keyIndex] of [
        ['adv_e2ee', false, 1234567890, 3],
        ['adv_hosted', true, 42, 11]
    ]) {
        const c = advCase(name, { ...advBase, hosted, rawId, keyIndex, timestamp: 1764312000 });
        adv.push(c.vector);
        stanzas.push(...c.stanzas);
    }

    const qr = [];
    const browsers = [
        ['Mac OS', 'Chrome', '14.4.1'],
        ['Windows', 'Desktop', '10'],
        ['Mac OS', 'Desktop', '14'],
        ['Ubuntu', 'Firefox', '22.04'],
        ['Mac OS', 'Safari', '17'],
        ['Linux', 'Lynx', '2.9']
    ];
    for (const browser of browsers) {
        const refStr = `2@${b64(rng.bytes(30)).replace(/[+/=]/g, 'x')},Q`.slice(0, 40).replace(',', 'z');
        const noise = keyPairFrom(rng.bytes(32)).public;
        const ident = keyPairFrom(rng.bytes(32)).public;
        const adv = rng.bytes(32);
        const s = buildPairingQRData(refStr, b64(noise), b64(ident), b64(adv), browser);
        qr.push({ browser, ref: refStr, noise_public: hex(noise), identity_public: hex(ident), adv_secret: hex(adv), qr: s });
    }

    return {
        vectors: {
            codes: codeVectors(rng),
            link_code: linkCode,
            wraps,
            hkdf: hkdfVectors(rng),
            adv_hmac: hmacVectors(rng),
            adv,
            qr
        },
        stanzas
    };
};
