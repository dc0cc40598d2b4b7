// Signal vectors (tests/vectors/signal.json): a scripted conversation between a libsignal peer
// ("lib", npm libsignal 6.0.0 as Baileys 7.0.0-rc14 uses it) and a second libsignal peer that
// stands in for evolink ("evo"). The Python test replays every "evo" step with evolink.signal —
// fed the same ratchet keys through its rng — and checks it decrypts the same plaintexts and
// produces byte-identical ciphertexts (which "lib" decrypted here). Group messages come from
// Baileys' GroupCipher. All keys come from seeded streams, so re-running writes the same file.
import { createRequire } from 'node:module';

import { address, Peer, quietly, seedKeys, takeKeyLog } from './signal_peer.mjs';
import { hex, keyPairFrom, Rng } from './vectors_common.mjs';

const require = createRequire(import.meta.url);
const curve = require('libsignal/src/curve.js');
const libsignal = require('libsignal');

// The "evo" mirror gets one fix. libsignal-JS tries a SignalMessage on every session of the record
// *in place*: a failed attempt on the open session (e.g. a late message of a replaced session,
// whose ratchet key the open session does not know) steps that session's ratchet, and the record
// is then stored with the damage, so the next message it sends is undecryptable. evolink tries
// each session on a copy; the mirror must do the same or its later outputs are garbage.
let mirrorStorage = null;
const decryptWithSessions = libsignal.SessionCipher.prototype.decryptWithSessions;
libsignal.SessionCipher.prototype.decryptWithSessions = async function (data, sessions) {
    if (this.storage !== mirrorStorage) return decryptWithSessions.call(this, data, sessions);
    const Entry = libsignal.SessionRecord.createEntry().constructor;
    for (const session of sessions) {
        const copy = Entry.deserialize(session.serialize());
        try {
            const plaintext = await this.doDecryptWhisperMessage(data, copy);
            copy.indexInfo.used = Date.now();
            for (const key of Object.keys(session)) if (!(key in copy)) delete session[key];
            Object.assign(session, copy);
            return { session, plaintext };
        } catch { /* next session */ }
    }
    throw new libsignal.SessionError('No matching sessions found for message');
};

const clamp = (b) => { b[0] &= 248; b[31] &= 127; b[31] |= 64; return b; };
const p33 = (pub) => Buffer.concat([Buffer.from([5]), pub]);

function makeKeys(rng, withPreKeys) {
    const identity = keyPairFrom(clamp(rng.bytes(32)));
    const registrationId = rng.int(16384);
    const spk = keyPairFrom(clamp(rng.bytes(32)));
    const signature = curve.calculateSignature(identity.private, p33(spk.public));
    const preKeys = [];
    for (let id = 1; id <= withPreKeys; id++) preKeys.push({ id, kp: keyPairFrom(clamp(rng.bytes(32))) });
    return { identity, registrationId, spk: { id: 1, kp: spk, signature }, preKeys };
}

const keysJson = (k) => ({
    identity_private: hex(k.identity.private),
    identity_public: hex(k.identity.public),
    registration_id: k.registrationId,
    signed_pre_key: { id: k.spk.id, private: hex(k.spk.kp.private), signature: hex(k.spk.signature) },
    pre_keys: k.preKeys.map((p) => ({ id: p.id, private: hex(p.kp.private) })),
});

function peerFor(k) {
    const peer = new Peer(k.identity, k.registrationId);
    peer.setSignedPreKey(k.spk.id, k.spk.kp, k.spk.signature);
    for (const p of k.preKeys) peer.addPreKey(p.id, p.kp);
    return peer;
}

const bundleOf = (k, preKeyId) => {
    const pk = preKeyId == null ? null : k.preKeys.find((p) => p.id === preKeyId);
    return {
        registrationId: k.registrationId, identityKey: k.identity.public,
        signedPreKey: { keyId: k.spk.id, publicKey: k.spk.kp.public, signature: k.spk.signature },
        preKey: pk ? { keyId: pk.id, publicKey: pk.kp.public } : undefined,
    };
};

async function conversation() {
    const rng = new Rng('evolink signal vectors v1');
    const libKeys = makeKeys(rng, 3);
    const evoKeys = makeKeys(rng, 3);
    const lib = peerFor(libKeys);
    const evo = peerFor(evoKeys);
    mirrorStorage = evo;
    const toEvo = address('evo', 1);
    const toLib = address('lib', 1);
    seedKeys('evolink signal vectors v1 ratchet keys');
    const events = [];
    const sent = new Map();
    let n = 0;
    const text = (who) => Buffer.from(`${who} message ${n++} ` + 'x'.repeat(n % 23), 'utf-8');

    const libBundle = async (preKeyId) => {
        await lib.processBundle(toEvo, bundleOf(evoKeys, preKeyId));
        takeKeyLog();
        events.push({ op: 'lib_bundle', pre_key_id: preKeyId });
    };
    const libEncrypt = async (id) => {
        const plaintext = text('lib');
        const { type, body } = await lib.encrypt(toEvo, plaintext);
        takeKeyLog();
        sent.set(id, { type, body, plaintext });
        events.push({ op: 'lib_encrypt', id, type, body: hex(body), plaintext: hex(plaintext) });
    };
    const evoDecrypt = async (id) => {
        const m = sent.get(id);
        takeKeyLog();
        const before = new Set(evo.removedPreKeys);
        let plaintext;
        try { plaintext = await evo.decrypt(toLib, m.type, m.body); } catch (e) { throw new Error(`evo decrypt ${id}: ${e}`); }
        if (!plaintext.equals(m.plaintext)) throw new Error(`mirror decrypted ${id} wrongly`);
        const used = evo.removedPreKeys.filter((x) => !before.has(x));
        events.push({ op: 'evo_decrypt', id, keys: takeKeyLog().map(hex), used_pre_key_id: used[0] ?? null });
    };
    const evoDecryptFails = async (id, error) => {
        const m = sent.get(id);
        takeKeyLog();
        let failed = false;
        try { await evo.decrypt(toLib, m.type, m.body); } catch { failed = true; }
        if (!failed) throw new Error(`mirror accepted ${id}`);
        takeKeyLog();
        events.push({ op: 'evo_decrypt_fails', id, error });
    };
    const evoEncrypt = async (id) => {
        const plaintext = text('evo');
        takeKeyLog();
        const { type, body } = await evo.encrypt(toLib, plaintext);
        if (takeKeyLog().length) throw new Error('encrypt drew keys');
        let back;
        try { back = await lib.decrypt(toEvo, type, body); } catch (e) { throw new Error(`lib decrypt ${id}: ${e}`); }
        takeKeyLog();
        if (!back.equals(plaintext)) throw new Error(`lib could not decrypt ${id}`);
        events.push({ op: 'evo_encrypt', id, type, body: hex(body), plaintext: hex(plaintext) });
    };
    const evoBundle = async (preKeyId) => {
        takeKeyLog();
        await evo.processBundle(toLib, bundleOf(libKeys, preKeyId));
        events.push({ op: 'evo_bundle', pre_key_id: preKeyId, keys: takeKeyLog().map(hex) });
    };
    const note = (text) => events.push({ op: 'note', text });

    note('lib starts with a bundle that has one-time pre-key 1; two pkmsgs, delivered in reverse');
    await libBundle(1);
    await libEncrypt('m0');
    await libEncrypt('m1');
    await evoDecrypt('m1');
    await evoDecrypt('m0');
    await evoDecryptFails('m0', 'duplicate');
    note('evo answers; lib switches to plain msgs on a new ratchet');
    await evoEncrypt('r0');
    await evoEncrypt('r1');
    for (const id of ['m2', 'm3', 'm4', 'm5']) await libEncrypt(id);
    note('out of order within one chain');
    await evoDecrypt('m4');
    await evoDecrypt('m2');
    await evoDecrypt('m5');
    await evoDecrypt('m3');
    await evoDecryptFails('m4', 'duplicate');
    note('skipped messages; some never arrive, one arrives after the chain was closed by a ratchet step');
    for (const id of ['m6', 'm7', 'm8', 'm9', 'm10']) await libEncrypt(id);
    await evoDecrypt('m10');
    await evoDecrypt('m7');
    await evoEncrypt('r2');
    await libEncrypt('m11');
    await evoDecrypt('m11');
    await evoDecrypt('m8');
    note('lib replaces the session (new bundle with pre-key 2) while a message of the old one is in flight');
    await libEncrypt('m12');
    await lib.deleteSession(toEvo);
    await libBundle(2);
    await libEncrypt('m13');
    await evoDecrypt('m13');
    await evoDecrypt('m12');
    await evoEncrypt('r3');
    await libEncrypt('m14');
    await evoDecrypt('m14');
    note('a bundle without a one-time pre-key (three-DH X3DH)');
    await lib.deleteSession(toEvo);
    await libBundle(null);
    await libEncrypt('m15');
    await evoDecrypt('m15');
    await evoEncrypt('r4');
    note('a pkmsg naming the consumed pre-key 1 again is refused');
    await lib.deleteSession(toEvo);
    await libBundle(1);
    await libEncrypt('m16');
    await evoDecryptFails('m16', 'invalid_key_id');
    note('evo starts a new session itself (as initiator) with lib pre-key 3; lib answers');
    await evoBundle(3);
    await evoEncrypt('r5');
    await evoEncrypt('r6');
    await libEncrypt('m17');
    await evoDecrypt('m17');
    await evoEncrypt('r7');
    seedKeys(null);
    return { lib: keysJson(libKeys), evo: keysJson(evoKeys), events };
}

async function groups() {
    const rng = new Rng('evolink signal group vectors v1');
    const lib = new Peer(keyPairFrom(clamp(rng.bytes(32))), 1);
    const evo = new Peer(keyPairFrom(clamp(rng.bytes(32))), 2);
    const group = '120363000000000001@g.us';
    const name = lib.senderKeyName(group, address('111_1', 3));
    const keyId = rng.int(2147483647);
    const chainKey = rng.bytes(32);
    const signing = keyPairFrom(clamp(rng.bytes(32)));
    await lib.setOwnSenderKey(name, keyId, chainKey, signing);
    const skdm = await lib.createSkdm(name);
    await evo.processSkdm(name, skdm);
    const messages = [];
    for (let i = 0; i < 6; i++) {
        const plaintext = Buffer.from(`group message ${i} ` + 'y'.repeat(i * 7), 'utf-8');
        const skmsg = await lib.groupEncrypt(name, plaintext);
        messages.push({ id: `g${i}`, skmsg: hex(skmsg), plaintext: hex(plaintext) });
    }
    const order = ['g0', 'g2', 'g1', 'g5', 'g3'];
    for (const id of order) {
        const m = messages.find((x) => x.id === id);
        const out = await evo.groupDecrypt(name, Buffer.from(m.skmsg, 'hex'));
        if (out.toString('hex') !== m.plaintext) throw new Error(`mirror group decrypt ${id}`);
    }
    // a later SKDM of the same key (as whatsmeow re-sends) and a message after it
    const skdm2 = await lib.createSkdm(name);
    const late = Buffer.from('after the second skdm', 'utf-8');
    const skmsgLate = await lib.groupEncrypt(name, late);
    messages.push({ id: 'g6', skmsg: hex(skmsgLate), plaintext: hex(late) });
    return {
        group_id: group, sender: { name: '111_1', device_id: 3 }, key_id: keyId,
        signing_public: hex(signing.public), skdm: hex(skdm), skdm_later: hex(skdm2),
        messages, delivery_order: [...order, 'g6'], replay: 'g2', never_delivered: ['g4'],
    };
}

export async function signalVectors() {
    return quietly(async () => ({ conversation: await conversation(), group: await groups() }));
}
