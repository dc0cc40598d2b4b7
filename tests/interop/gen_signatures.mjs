// Curve25519 (XEdDSA-family) signatures and X25519 agreements from Baileys' Curve (libsignal
// calculateSignature / calculateAgreement). Each signature is checked here with curve25519-js
// `verify` — a real check, unlike Baileys' Curve.verify, which only fails on malformed input.
import assert from 'node:assert/strict';
import { Curve, signedKeyPair } from 'baileys';
import curveJs from 'curve25519-js';

import { hex, keyPairFrom, Rng } from './vectors_common.mjs';

const MESSAGE_LENGTHS = [0, 1, 2, 31, 32, 33, 64, 100, 1000, 4096];

export const signatureVectors = () => {
    const rng = new Rng('evolink-interop-signatures-v1');
    const keys = [];
    for (let i = 0; i < 40; i++) keys.push(keyPairFrom(rng.bytes(32)));
    // a few private keys with extreme bit patterns (clamping must be applied by both sides)
    for (const fill of [0x00, 0xff, 0x80, 0x7f]) keys.push(keyPairFrom(Buffer.alloc(32, fill)));

    const signatures = [];
    for (let i = 0; i < 240; i++) {
        const kp = keys[i % keys.length];
        const len = i < MESSAGE_LENGTHS.length * 4 ? MESSAGE_LENGTHS[i % MESSAGE_LENGTHS.length] : rng.int(600);
        const msg = i % 7 === 3 ? Buffer.concat([Buffer.from([5]), keys[(i + 1) % keys.length].public]) : rng.bytes(len);
        const sig = Buffer.from(Curve.sign(kp.private, msg));
        assert.ok(curveJs.verify(kp.public, msg, sig), 'curve25519-js rejected a Baileys signature');
        signatures.push({ private: hex(kp.private), public: hex(kp.public), message: hex(msg), signature: hex(sig) });
    }
    const signBitSet = signatures.filter((s) => parseInt(s.signature.slice(126, 128), 16) & 0x80).length;

    const agreements = [];
    for (let i = 0; i < 40; i++) {
        const a = keys[i % keys.length];
        const b = keys[(i * 7 + 3) % keys.length];
        const ab = Curve.sharedKey(a.private, b.public);
        assert.deepEqual(ab, Curve.sharedKey(b.private, a.public));
        agreements.push({ private: hex(a.private), peer_public: hex(b.public), shared: hex(ab) });
    }

    // public keys as Baileys derives them from a private key (libsignal / curve25519-js path)
    const derived = keys.slice(0, 20).map((kp) => {
        const viaCurveJs = Buffer.from(curveJs.generateKeyPair(kp.private).public);
        assert.deepEqual(viaCurveJs, kp.public, 'curve25519-js and node:crypto disagree on a public key');
        return { private: hex(kp.private), public: hex(viaCurveJs) };
    });

    // Baileys' own RNG-driven helpers: these entries change on every run of the generator
    const generated = [];
    for (let i = 0; i < 8; i++) {
        const identity = Curve.generateKeyPair();
        const spk = signedKeyPair(identity, 100 + i);
        generated.push({
            identity: { private: hex(identity.private), public: hex(identity.public) },
            signed_pre_key: {
                key_id: spk.keyId,
                private: hex(spk.keyPair.private),
                public: hex(spk.keyPair.public),
                signature: hex(spk.signature)
            }
        });
    }

    return {
        description:
            'signature = Baileys Curve.sign(private, message) (libsignal calculateSignature, curve25519-js); ' +
            'each verified with curve25519-js verify during generation. signed_pre_key.signature is over 0x05 || public.',
        sign_bit_set_count: signBitSet,
        signatures,
        agreements,
        derived_public_keys: derived,
        baileys_generated: generated
    };
};
