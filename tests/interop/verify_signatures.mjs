// Verifies curve25519 (XEdDSA-family) signatures the way a correct libsignal peer does.
//
//   stdin:  JSON array of {"pub": hex32, "msg": hex, "sig": hex64}
//   stdout: JSON {"curve25519_js": [bool...], "libsignal": [bool...]}
//
// Two REAL checks per item: curve25519-js `verify` called directly, and libsignal's
// `verifySignature` whose boolean return value is inspected. Baileys' own `Curve.verify` is NOT
// used: it only returns false when libsignal throws on malformed input, so it accepts forgeries.
import curveJs from 'curve25519-js';
import * as libsignalCurve from 'libsignal/src/curve.js';

import { readStdin } from './vectors_common.mjs';

const safe = (fn) => {
    try {
        return fn() === true;
    } catch {
        return false;
    }
};

const items = JSON.parse(await readStdin());
if (!Array.isArray(items)) {
    console.error('expected a JSON array of {pub, msg, sig}');
    process.exit(2);
}
const out = { curve25519_js: [], libsignal: [] };
for (const { pub, msg, sig } of items) {
    const pubKey = Buffer.from(pub, 'hex');
    const message = Buffer.from(msg, 'hex');
    const signature = Buffer.from(sig, 'hex');
    out.curve25519_js.push(safe(() => curveJs.verify(pubKey, message, signature)));
    out.libsignal.push(safe(() => libsignalCurve.verifySignature(Buffer.concat([Buffer.from([5]), pubKey]), message, signature)));
}
process.stdout.write(JSON.stringify(out) + '\n');
