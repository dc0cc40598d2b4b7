// Noise XX transcript: Baileys' client noise handler (makeNoiseHandler + processHandshake, driven the
// way Socket/socket.ts validateConnection drives it) against an independent responder written here
// with node:crypto. All keys are fixed, and AES-GCM is deterministic given key and nonce, so every
// byte of the transcript is reproducible.
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHash, diffieHellman, createPrivateKey, createPublicKey, hkdfSync } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import {
    Curve,
    DEFAULT_CONNECTION_CONFIG,
    encodeBinaryNode,
    generateLoginNode,
    generateRegistrationNode,
    makeNoiseHandler,
    NOISE_MODE,
    NOISE_WA_HEADER,
    proto,
    S_WHATSAPP_NET,
    WA_CERT_DETAILS
} from 'baileys';

import { b64, hex, keyPairFrom, nodeToJson, patternBytes, Rng, silentLogger } from './vectors_common.mjs';

const PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const dh = (priv, pub) =>
    diffieHellman({
        privateKey: createPrivateKey({ key: Buffer.concat([PKCS8, priv]), format: 'der', type: 'pkcs8' }),
        publicKey: createPublicKey({ key: Buffer.concat([SPKI, pub]), format: 'der', type: 'spki' })
    });
const sha256 = (...parts) => createHash('sha256').update(Buffer.concat(parts)).digest();
const iv = (n) => {
    const b = Buffer.alloc(12);
    b.writeUInt32BE(n, 8);
    return b;
};
const gcmEncrypt = (key, n, aad, plaintext) => {
    const c = createCipheriv('aes-256-gcm', key, iv(n));
    c.setAAD(aad);
    return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
};
const gcmDecrypt = (key, n, aad, data) => {
    const d = createDecipheriv('aes-256-gcm', key, iv(n));
    d.setAAD(aad);
    d.setAuthTag(data.subarray(data.length - 16));
    return Buffer.concat([d.update(data.subarray(0, data.length - 16)), d.final()]);
};
const frame = (payload) => {
    const len = Buffer.alloc(3);
    len.writeUIntBE(payload.length, 0, 3);
    return Buffer.concat([len, payload]);
};

/** Independent WhatsApp-variant Noise XX responder (no MixHash of the empty message-1 payload). */
class Responder {
    constructor(staticKp, ephemeralKp, prologue) {
        this.s = staticKp;
        this.e = ephemeralKp;
        this.h = Buffer.from(NOISE_MODE, 'latin1');
        assert.equal(this.h.length, 32);
        this.ck = this.h;
        this.k = null;
        this.n = 0;
        this.mixHash(prologue);
    }
    mixHash(data) {
        this.h = sha256(this.h, data);
    }
    mixKey(ikm) {
        const out = Buffer.from(hkdfSync('sha256', ikm, this.ck, Buffer.alloc(0), 64));
        this.ck = out.subarray(0, 32);
        this.k = out.subarray(32);
        this.n = 0;
    }
    encryptAndHash(pt) {
        const ct = gcmEncrypt(this.k, this.n++, this.h, pt);
        this.mixHash(ct);
        return ct;
    }
    decryptAndHash(ct) {
        const pt = gcmDecrypt(this.k, this.n++, this.h, ct);
        this.mixHash(ct);
        return pt;
    }
    readClientHello(bytes) {
        const msg = proto.HandshakeMessage.decode(bytes);
        this.re = Buffer.from(msg.clientHello.ephemeral);
        this.mixHash(this.re);
        return this.re;
    }
    serverHello(certPayload) {
        this.mixHash(this.e.public);
        this.mixKey(dh(this.e.private, this.re));
        const encStatic = this.encryptAndHash(this.s.public);
        this.mixKey(dh(this.s.private, this.re));
        const encPayload = this.encryptAndHash(certPayload);
        return Buffer.from(
            proto.HandshakeMessage.encode({ serverHello: { ephemeral: this.e.public, static: encStatic, payload: encPayload } }).finish()
        );
    }
    readClientFinish(bytes) {
        const msg = proto.HandshakeMessage.decode(bytes);
        this.rs = this.decryptAndHash(Buffer.from(msg.clientFinish.static));
        this.mixKey(dh(this.e.private, this.rs));
        const payload = this.decryptAndHash(Buffer.from(msg.clientFinish.payload));
        const out = Buffer.from(hkdfSync('sha256', Buffer.alloc(0), this.ck, Buffer.alloc(0), 64));
        // client writes with the first half, so the server reads with it
        this.readKey = out.subarray(0, 32);
        this.writeKey = out.subarray(32);
        this.readN = 0;
        this.writeN = 0;
        return { static: this.rs, payload };
    }
    encrypt(pt) {
        return gcmEncrypt(this.writeKey, this.writeN++, Buffer.alloc(0), pt);
    }
    decrypt(ct) {
        return gcmDecrypt(this.readKey, this.readN++, Buffer.alloc(0), ct);
    }
}

const certChain = (root, intermediate, leafPublic, rng) => {
    const Details = proto.CertChain.NoiseCertificate.Details;
    const intermediateDetails = Buffer.from(
        Details.encode({ serial: 1, issuerSerial: 0, key: intermediate.public, notBefore: 1700000000, notAfter: 2000000000 }).finish()
    );
    const leafDetails = Buffer.from(
        Details.encode({ serial: 2, issuerSerial: 1, key: leafPublic, notBefore: 1760000000, notAfter: 1800000000 }).finish()
    );
    // Baileys' Curve.sign (libsignal calculateSignature, deterministic curve25519-js signing)
    const intermediateSig = Buffer.from(Curve.sign(root.private, intermediateDetails));
    const leafSig = Buffer.from(Curve.sign(intermediate.private, leafDetails));
    void rng;
    const payload = Buffer.from(
        proto.CertChain.encode({
            leaf: { details: leafDetails, signature: leafSig },
            intermediate: { details: intermediateDetails, signature: intermediateSig }
        }).finish()
    );
    return {
        payload,
        intermediate_details: hex(intermediateDetails),
        intermediate_signature: hex(intermediateSig),
        leaf_details: hex(leafDetails),
        leaf_signature: hex(leafSig),
        intermediate: { serial: 1, issuer_serial: 0, not_before: 1700000000, not_after: 2000000000 },
        leaf: { serial: 2, issuer_serial: 1, not_before: 1760000000, not_after: 1800000000 }
    };
};

/** Fixed creds in the shape generateRegistrationNode reads. */
const registrationCreds = (rng, identity) => {
    const preKey = keyPairFrom(rng.bytes(32));
    const signature = Buffer.from(Curve.sign(identity.private, Buffer.concat([Buffer.from([5]), preKey.public])));
    return { registrationId: 0x2e9a, signedIdentityKey: identity, signedPreKey: { keyId: 1, keyPair: preKey, signature } };
};

const protoJson = (Type, bytes) =>
    Type.toObject(Type.decode(bytes), { longs: String, enums: Number, bytes: String, defaults: false });

/** Feed bytes to Baileys' decodeFrame in the given chunk sizes and collect the nodes it emits. */
const baileysReceive = async (noise, bytes, chunkSizes) => {
    const nodes = [];
    let off = 0;
    let i = 0;
    while (off < bytes.length) {
        const size = chunkSizes[i++ % chunkSizes.length];
        await noise.decodeFrame(bytes.subarray(off, off + size), (n) => nodes.push(n));
        off += size;
    }
    return nodes;
};

export const noiseHandshake = async () => {
    const rng = new Rng('evolink-interop-noise-v1');
    const client = { ephemeral: keyPairFrom(rng.bytes(32)), static: keyPairFrom(rng.bytes(32)), identity: keyPairFrom(rng.bytes(32)) };
    const server = { ephemeral: keyPairFrom(rng.bytes(32)), static: keyPairFrom(rng.bytes(32)) };
    const root = keyPairFrom(rng.bytes(32));
    const intermediate = keyPairFrom(rng.bytes(32));
    const cert = certChain(root, intermediate, server.static.public, rng);

    // point Baileys' trust root at our fixed root key (its signature check is a no-op today, §2.6)
    const savedRoot = WA_CERT_DETAILS.PUBLIC_KEY;
    WA_CERT_DETAILS.PUBLIC_KEY = root.public;
    try {
        const config = { ...DEFAULT_CONNECTION_CONFIG, version: [2, 3000, 1043857760], browser: ['Mac OS', 'Chrome', '14.4.1'] };
        const registrationPayload = Buffer.from(
            proto.ClientPayload.encode(generateRegistrationNode(registrationCreds(rng, client.identity), config)).finish()
        );
        const loginPayload = Buffer.from(
            proto.ClientPayload.encode(generateLoginNode('15550001111:7@s.whatsapp.net', { ...config, pushName: 'Evolink' })).finish()
        );

        // --- client hello (Baileys) ---
        const noise = makeNoiseHandler({ keyPair: client.ephemeral, NOISE_HEADER: NOISE_WA_HEADER, logger: silentLogger });
        const clientHello = Buffer.from(proto.HandshakeMessage.encode(proto.HandshakeMessage.fromObject({ clientHello: { ephemeral: client.ephemeral.public } })).finish());
        const clientHelloWire = Buffer.from(noise.encodeFrame(clientHello));

        // --- server hello (independent responder) ---
        const responder = new Responder(server.static, server.ephemeral, NOISE_WA_HEADER);
        assert.deepEqual(responder.readClientHello(clientHello), client.ephemeral.public);
        const serverHello = responder.serverHello(cert.payload);

        // --- Baileys processes it and finishes ---
        const handshake = proto.HandshakeMessage.decode(serverHello);
        const keyEnc = noise.processHandshake(handshake, client.static);
        const payloadEnc = noise.encrypt(registrationPayload);
        const clientFinish = Buffer.from(proto.HandshakeMessage.encode({ clientFinish: { static: keyEnc, payload: payloadEnc } }).finish());
        const clientFinishWire = Buffer.from(noise.encodeFrame(clientFinish));
        await noise.finishInit();

        const finished = responder.readClientFinish(clientFinish);
        assert.deepEqual(finished.static, client.static.public);
        assert.deepEqual(finished.payload, registrationPayload);

        // --- transport: client -> server (Baileys encodeFrame) ---
        const c2sNodes = [
            { tag: 'iq', attrs: { id: '45120.18830-1', to: S_WHATSAPP_NET, type: 'result' } },
            { tag: 'iq', attrs: { id: '45120.18830-2', xmlns: 'encrypt', type: 'get', to: S_WHATSAPP_NET }, content: [{ tag: 'count', attrs: {} }] },
            { tag: 'iq', attrs: { id: '45120.18830-3', to: S_WHATSAPP_NET, type: 'get', xmlns: 'w:p' }, content: [{ tag: 'ping', attrs: {} }] },
            { tag: 'ib', attrs: {}, content: [{ tag: 'unified_session', attrs: { id: '283750000' } }] },
            { tag: 'message', attrs: { id: '3EB0B430B6F8F1D0E1A2', to: '5511999999999@s.whatsapp.net', type: 'text' }, content: [{ tag: 'enc', attrs: { v: '2', type: 'msg' }, content: rng.bytes(700) }] }
        ];
        const c2s = [];
        for (const node of c2sNodes) {
            const plaintext = encodeBinaryNode(node);
            const wire = Buffer.from(noise.encodeFrame(plaintext));
            const ciphertext = wire.subarray(3);
            assert.deepEqual(responder.decrypt(ciphertext), plaintext);
            c2s.push({ node: nodeToJson(node), plaintext_b64: b64(plaintext), ciphertext_b64: b64(ciphertext), frame_b64: b64(wire) });
        }

        // --- transport: server -> client (our responder encrypts, Baileys decodes) ---
        const refs = [];
        for (let i = 0; i < 6; i++) refs.push({ tag: 'ref', attrs: {}, content: Buffer.from(`2@${b64(rng.bytes(48))}`) });
        const s2cPlain = [
            encodeBinaryNode({ tag: 'iq', attrs: { from: S_WHATSAPP_NET, type: 'set', id: '1717.2323-1', xmlns: 'md' }, content: [{ tag: 'pair-device', attrs: {}, content: refs }] }),
            encodeBinaryNode({ tag: 'iq', attrs: { from: S_WHATSAPP_NET, type: 'result', id: '45120.18830-2' }, content: [{ tag: 'count', attrs: { value: '0' } }] }),
            // a zlib-compressed frame (flags 0x02): servers may compress, clients must inflate
            Buffer.concat([
                Buffer.from([2]),
                deflateSync(encodeBinaryNode({ tag: 'ib', attrs: { from: S_WHATSAPP_NET }, content: [{ tag: 'edge_routing', attrs: {}, content: [{ tag: 'routing_info', attrs: {}, content: Buffer.from('0808080508', 'hex') }] }] }).subarray(1))
            ]),
            encodeBinaryNode({ tag: 'success', attrs: { t: '1764312345', props: '28', lid: '987654321012345@lid', location: 'frc' } }),
            encodeBinaryNode({ tag: 'stream:error', attrs: { code: '515' } })
        ];
        const s2c = [];
        let stream = Buffer.alloc(0);
        for (const plaintext of s2cPlain) {
            const ciphertext = responder.encrypt(plaintext);
            const wire = frame(ciphertext);
            stream = Buffer.concat([stream, wire]);
            s2c.push({ plaintext_b64: b64(plaintext), ciphertext_b64: b64(ciphertext), frame_b64: b64(wire) });
        }
        const chunkSizes = [1, 2, 3, 7, 100, 5000];
        const received = await baileysReceive(noise, stream, chunkSizes);
        assert.equal(received.length, s2c.length);
        received.forEach((node, i) => {
            s2c[i].baileys_decoded = nodeToJson(node);
        });

        // a corrupted frame: Baileys' decrypt throws but still advances its read counter,
        // so the following good frame decodes
        const badPlain = encodeBinaryNode({ tag: 'iq', attrs: { id: 'bad', type: 'get' } });
        const badCipher = Buffer.from(responder.encrypt(badPlain));
        badCipher[5] ^= 0x01;
        const goodPlain = encodeBinaryNode({ tag: 'iq', attrs: { id: 'after-bad', type: 'result', from: S_WHATSAPP_NET } });
        const goodCipher = responder.encrypt(goodPlain);
        let badError = null;
        try {
            await noise.decodeFrame(frame(badCipher), () => {});
        } catch (err) {
            badError = String(err.message || err);
        }
        assert.ok(badError, 'Baileys accepted a corrupted frame');
        const afterBad = await baileysReceive(noise, frame(goodCipher), [1 << 20]);
        assert.equal(afterBad.length, 1);
        const corrupted = {
            bad_ciphertext_b64: b64(badCipher),
            bad_plaintext_b64: b64(badPlain),
            baileys_error: badError,
            next_ciphertext_b64: b64(goodCipher),
            next_plaintext_b64: b64(goodPlain),
            baileys_next_decoded: nodeToJson(afterBad[0])
        };

        // --- intro variants (Baileys encodeFrame on a fresh handler) ---
        const routingInfo = Buffer.from('0808080512040801102a', 'hex');
        const edNoise = makeNoiseHandler({ keyPair: client.ephemeral, NOISE_HEADER: NOISE_WA_HEADER, logger: silentLogger, routingInfo });
        const edFirst = Buffer.from(edNoise.encodeFrame(clientHello));
        const edSecond = Buffer.from(edNoise.encodeFrame(Buffer.from('second')));
        const plainNoise = makeNoiseHandler({ keyPair: client.ephemeral, NOISE_HEADER: NOISE_WA_HEADER, logger: silentLogger });
        const framing = [];
        // payload = pattern bytes; the first frame carries the intro header (sentIntro = false)
        for (const [i, len] of [0, 1, 255, 256, 65535, 65536, 70000, (1 << 24) - 1].entries()) {
            const pattern = { length: len, mul: 7, add: i };
            const wire = Buffer.from(plainNoise.encodeFrame(patternBytes(pattern)));
            framing.push({ pattern, with_intro: i === 0, wire_sha256: createHash('sha256').update(wire).digest('hex'), wire_head_b64: b64(wire.subarray(0, 16)) });
        }

        return {
            description:
                'Noise_XX_25519_AESGCM_SHA256 (WhatsApp variant) transcript. Client = Baileys makeNoiseHandler; ' +
                'server = independent node:crypto responder in gen_noise.mjs. *_wire fields include framing ' +
                '(and the intro header on the first client message).',
            protocol_name_hex: hex(Buffer.from(NOISE_MODE, 'latin1')),
            prologue_hex: hex(NOISE_WA_HEADER),
            keys: {
                client_ephemeral: { private: hex(client.ephemeral.private), public: hex(client.ephemeral.public) },
                client_static: { private: hex(client.static.private), public: hex(client.static.public) },
                client_identity: { private: hex(client.identity.private), public: hex(client.identity.public) },
                server_ephemeral: { private: hex(server.ephemeral.private), public: hex(server.ephemeral.public) },
                server_static: { private: hex(server.static.private), public: hex(server.static.public) },
                cert_root: { private: hex(root.private), public: hex(root.public) },
                cert_intermediate: { private: hex(intermediate.private), public: hex(intermediate.public) }
            },
            cert_chain: { ...cert, payload: hex(cert.payload), check_time: 1764312345 },
            client_payload: {
                registration_hex: hex(registrationPayload),
                registration_json: protoJson(proto.ClientPayload, registrationPayload),
                device_props_json: protoJson(proto.DeviceProps, proto.ClientPayload.decode(registrationPayload).devicePairingData.deviceProps),
                login_hex: hex(loginPayload),
                login_json: protoJson(proto.ClientPayload, loginPayload)
            },
            handshake: {
                client_hello_hex: hex(clientHello),
                client_hello_wire_hex: hex(clientHelloWire),
                server_hello_hex: hex(serverHello),
                client_finish_hex: hex(clientFinish),
                client_finish_wire_hex: hex(clientFinishWire),
                handshake_hash_hex: hex(responder.h),
                client_write_key_hex: hex(responder.readKey),
                client_read_key_hex: hex(responder.writeKey)
            },
            transport: {
                client_to_server: c2s,
                server_to_client: s2c,
                server_stream_b64: b64(stream),
                baileys_chunk_sizes: chunkSizes,
                corrupted_frame: corrupted
            },
            intro: {
                plain_hex: hex(NOISE_WA_HEADER),
                routing_info_hex: hex(routingInfo),
                ed_first_message_hex: hex(edFirst),
                ed_second_message_hex: hex(edSecond)
            },
            framing
        };
    } finally {
        WA_CERT_DETAILS.PUBLIC_KEY = savedRoot;
    }
};
