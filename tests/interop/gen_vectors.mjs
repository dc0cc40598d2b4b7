// Generates the committed interop vectors under tests/vectors/ with the pinned Baileys
// (baileys@7.0.0-rc14) as the reference implementation.
//
//   cd tests/interop && node gen_vectors.mjs [outdir]
//
// All inputs come from a seeded PRNG, so re-running writes identical files. The only exception
// is the "baileys_generated" section of signatures.json, which records key pairs that Baileys'
// own Curve.generateKeyPair / signedKeyPair draw from the OS RNG.
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { binaryNodes } from './gen_binary.mjs';
import { noiseHandshake } from './gen_noise.mjs';
import { pairingVectors } from './gen_pairing.mjs';
import { signalVectors } from './gen_signal.mjs';
import { signatureVectors } from './gen_signatures.mjs';
import { writeJson } from './vectors_common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(process.argv[2] || join(here, '..', 'vectors'));
mkdirSync(outDir, { recursive: true });

const meta = { generator: 'tests/interop/gen_vectors.mjs', peer: 'baileys@7.0.0-rc14', node: process.version };

// pairing first: its stanzas (companion_hello, pair-success, ...) are also binary-node vectors
const pairing = await pairingVectors();
writeJson(join(outDir, 'pairing.json'), { meta, ...pairing.vectors });

const nodes = await binaryNodes(pairing.stanzas);
writeJson(join(outDir, 'binary_nodes.json'), { meta, ...nodes });

const noise = await noiseHandshake();
writeJson(join(outDir, 'noise_handshake.json'), { meta, ...noise });

const sigs = signatureVectors();
writeJson(join(outDir, 'signatures.json'), { meta, ...sigs });

const signal = await signalVectors();
writeJson(join(outDir, 'signal.json'), { meta, ...signal });

const counts = {
    binary_nodes: nodes.vectors.length,
    noise_transport_frames: noise.transport.client_to_server.length + noise.transport.server_to_client.length,
    pairing_codes: pairing.vectors.codes.length,
    signatures: sigs.signatures.length,
    signal_events: signal.conversation.events.length + signal.group.messages.length
};
console.log(`wrote vectors to ${outDir}:`, JSON.stringify(counts));
