// Live libsignal peer for tests/interop/test_live_signal.py: one JSON request per stdin line, one
// JSON answer per stdout line. The peer is npm libsignal 6.0.0 (1:1) plus Baileys 7.0.0-rc14's
// GroupCipher (sender keys) over the in-memory store of signal_peer.mjs. Keys and ciphertexts
// travel as hex; errors come back as {"error": "..."} and never end the process.
import { createInterface } from 'node:readline';

import { address, Peer, quietly } from './signal_peer.mjs';
import { keyPairFrom } from './vectors_common.mjs';

const hexb = (h) => Buffer.from(h, 'hex');
let peer = null;

const handlers = {
    init({ identity_private, registration_id, signed_pre_key, pre_keys }) {
        peer = new Peer(keyPairFrom(hexb(identity_private)), registration_id);
        peer.setSignedPreKey(signed_pre_key.id, keyPairFrom(hexb(signed_pre_key.private)), hexb(signed_pre_key.signature));
        for (const p of pre_keys) peer.addPreKey(p.id, keyPairFrom(hexb(p.private)));
        return {};
    },
    async process_bundle({ to, bundle }) {
        await peer.processBundle(address(to.name, to.device_id), {
            registrationId: bundle.registration_id, identityKey: hexb(bundle.identity_key),
            signedPreKey: { keyId: bundle.signed_pre_key_id, publicKey: hexb(bundle.signed_pre_key),
                            signature: hexb(bundle.signed_pre_key_signature) },
            preKey: bundle.pre_key_id == null ? undefined : { keyId: bundle.pre_key_id, publicKey: hexb(bundle.pre_key) },
        });
        return {};
    },
    async delete_session({ to }) { await peer.deleteSession(address(to.name, to.device_id)); return {}; },
    async encrypt({ to, plaintext }) {
        const { type, body } = await peer.encrypt(address(to.name, to.device_id), hexb(plaintext));
        return { type, body: body.toString('hex') };
    },
    async decrypt({ from, type, body }) {
        const plaintext = await peer.decrypt(address(from.name, from.device_id), type, hexb(body));
        return { plaintext: Buffer.from(plaintext).toString('hex'), removed_pre_keys: peer.removedPreKeys };
    },
    async create_skdm({ group, sender }) {
        return { skdm: Buffer.from(await peer.createSkdm(peer.senderKeyName(group, address(sender.name, sender.device_id)))).toString('hex') };
    },
    async process_skdm({ group, sender, skdm }) {
        await peer.processSkdm(peer.senderKeyName(group, address(sender.name, sender.device_id)), hexb(skdm));
        return {};
    },
    async group_encrypt({ group, sender, plaintext }) {
        const name = peer.senderKeyName(group, address(sender.name, sender.device_id));
        return { skmsg: (await peer.groupEncrypt(name, hexb(plaintext))).toString('hex') };
    },
    async group_decrypt({ group, sender, skmsg }) {
        const name = peer.senderKeyName(group, address(sender.name, sender.device_id));
        return { plaintext: (await peer.groupDecrypt(name, hexb(skmsg))).toString('hex') };
    },
};

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
    let answer;
    try {
        const req = JSON.parse(line);
        const handler = handlers[req.op];
        if (!handler) throw new Error(`unknown op ${req.op}`);
        answer = await quietly(() => handler(req));
    } catch (e) {
        answer = { error: String(e && e.message ? e.message : e) };
    }
    process.stdout.write(JSON.stringify(answer) + '\n');
}
