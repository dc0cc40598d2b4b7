// A libsignal peer (npm libsignal 6.0.0 for 1:1 sessions, Baileys 7.0.0-rc14 lib/Signal/Group for
// sender keys) with an in-memory store that behaves like Baileys' signalStorage: records are
// serialized on every store and deserialized on every load, so nothing is shared by reference.
//
// Key generation can be made deterministic: `seedKeys(label)` replaces libsignal's
// curve.generateKeyPair with a seeded stream, and `takeKeyLog()` returns the private keys drawn
// since the last call (the Python side replays them as its rng).
import { createRequire } from 'node:module';

import { BufferJSON } from 'baileys/lib/Utils/generics.js';
import { GroupCipher, GroupSessionBuilder, SenderKeyDistributionMessage, SenderKeyName, SenderKeyRecord }
    from 'baileys/lib/Signal/Group/index.js';

import { keyPairFrom, Rng } from './vectors_common.mjs';

const require = createRequire(import.meta.url);
const libsignal = require('libsignal');
const curve = require('libsignal/src/curve.js');

/** Run fn with console muted: libsignal logs session changes with console.info/warn/error. */
export async function quietly(fn) {
    const saved = {};
    for (const level of ['log', 'info', 'warn', 'debug', 'error']) {
        saved[level] = console[level];
        console[level] = () => {};
    }
    try {
        return await fn();
    } finally {
        Object.assign(console, saved);
    }
}

const originalGenerateKeyPair = curve.generateKeyPair;
let keyRng = null;
let keyLog = [];

export function seedKeys(label) {
    keyRng = label === null ? null : new Rng(label);
    curve.generateKeyPair = keyRng ? seededKeyPair : originalGenerateKeyPair;
}

function seededKeyPair() {
    const priv = keyRng.bytes(32);
    priv[0] &= 248; priv[31] &= 127; priv[31] |= 64;
    keyLog.push(Buffer.from(priv));
    return toSignalPair(keyPairFrom(priv));
}

export function takeKeyLog() {
    const out = keyLog;
    keyLog = [];
    return out;
}

/** {private, public(32)} → libsignal's {privKey, pubKey(33)} */
export const toSignalPair = (kp) => ({ privKey: Buffer.from(kp.private), pubKey: Buffer.concat([Buffer.from([5]), kp.public]) });

export const address = (name, device) => new libsignal.ProtocolAddress(name, device);

export class Peer {
    /** identity: {private, public} raw 32-byte keys */
    constructor(identity, registrationId) {
        this.identity = toSignalPair(identity);
        this.registrationId = registrationId;
        this.sessions = new Map();
        this.preKeys = new Map();
        this.signedPreKey = null;
        this.senderKeys = new Map();
        this.removedPreKeys = [];
    }

    addPreKey(id, kp) { this.preKeys.set(id, kp); }
    setSignedPreKey(id, kp, signature) { this.signedPreKey = { id, kp, signature }; }

    // ---- the storage interface libsignal and Baileys' group code call
    async getOurIdentity() { return this.identity; }
    async getOurRegistrationId() { return this.registrationId; }
    async isTrustedIdentity() { return true; }
    async loadSession(addr) {
        const s = this.sessions.get(addr);
        return s ? libsignal.SessionRecord.deserialize(JSON.parse(s)) : undefined;
    }
    async storeSession(addr, record) { this.sessions.set(addr, JSON.stringify(record.serialize())); }
    async loadPreKey(id) {
        const kp = this.preKeys.get(id);
        return kp ? { privKey: Buffer.from(kp.private), pubKey: Buffer.from(kp.public) } : undefined;
    }
    async removePreKey(id) { this.preKeys.delete(id); this.removedPreKeys.push(id); }
    async loadSignedPreKey() {
        // Baileys ignores the id and always answers its current signed pre-key
        const s = this.signedPreKey;
        return s ? { privKey: Buffer.from(s.kp.private), pubKey: Buffer.from(s.kp.public) } : undefined;
    }
    async loadSenderKey(name) {
        const s = this.senderKeys.get(name.toString());
        return s ? SenderKeyRecord.deserialize(Buffer.from(s, 'utf-8')) : new SenderKeyRecord();
    }
    async storeSenderKey(name, record) {
        this.senderKeys.set(name.toString(), JSON.stringify(record.serialize(), BufferJSON.replacer));
    }

    // ---- operations
    /** bundle: {registrationId, identityKey(32), signedPreKey{keyId, publicKey(32), signature}, preKey?{keyId, publicKey}} */
    async processBundle(addr, bundle) {
        const p33 = (k) => Buffer.concat([Buffer.from([5]), k]);
        const device = {
            registrationId: bundle.registrationId,
            identityKey: p33(bundle.identityKey),
            signedPreKey: { keyId: bundle.signedPreKey.keyId, publicKey: p33(bundle.signedPreKey.publicKey),
                            signature: bundle.signedPreKey.signature },
        };
        if (bundle.preKey) device.preKey = { keyId: bundle.preKey.keyId, publicKey: p33(bundle.preKey.publicKey) };
        await new libsignal.SessionBuilder(this, addr).initOutgoing(device);
    }
    async deleteSession(addr) { this.sessions.delete(addr.toString()); }
    async encrypt(addr, plaintext) {
        const { type, body } = await new libsignal.SessionCipher(this, addr).encrypt(plaintext);
        return { type: type === 3 ? 'pkmsg' : 'msg', body: Buffer.from(body, 'binary') };
    }
    async decrypt(addr, type, body) {
        const cipher = new libsignal.SessionCipher(this, addr);
        return type === 'pkmsg' ? cipher.decryptPreKeyWhisperMessage(body) : cipher.decryptWhisperMessage(body);
    }

    senderKeyName(group, addr) { return new SenderKeyName(group, addr); }
    /** Put a fixed own sender-key state (Baileys' create() would draw it from the OS RNG). */
    async setOwnSenderKey(name, keyId, chainKey, signing) {
        const record = new SenderKeyRecord();
        record.setSenderKeyState(keyId, 0, chainKey, { public: Buffer.concat([Buffer.from([5]), signing.public]),
                                                      private: Buffer.from(signing.private) });
        await this.storeSenderKey(name, record);
    }
    async createSkdm(name) { return (await new GroupSessionBuilder(this).create(name)).serialize(); }
    async processSkdm(name, skdm) {
        await new GroupSessionBuilder(this).process(name, new SenderKeyDistributionMessage(null, null, null, null, skdm));
    }
    async groupEncrypt(name, plaintext) { return Buffer.from(await new GroupCipher(this, name).encrypt(plaintext)); }
    async groupDecrypt(name, skmsg) { return Buffer.from(await new GroupCipher(this, name).decrypt(skmsg)); }
}
