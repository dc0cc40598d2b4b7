// Live Baileys codec for tests: encodes JSON nodes and decodes byte strings with Baileys' own
// encodeBinaryNode / decodeBinaryNode.
//
//   stdin:  {"encode": [node-json...], "decode": [base64...]}
//   stdout: {"encoded": [base64 | {"error": msg}...], "decoded": [node-json | {"error": msg}...]}
//
// Node JSON is the vectors' form (see vectors_common.mjs).
import { decodeBinaryNode, encodeBinaryNode } from 'baileys';

import { b64, jsonToNode, nodeToJson, readStdin } from './vectors_common.mjs';

const request = JSON.parse(await readStdin());
const out = { encoded: [], decoded: [] };
for (const json of request.encode || []) {
    try {
        out.encoded.push(b64(encodeBinaryNode(jsonToNode(json))));
    } catch (err) {
        out.encoded.push({ error: String(err?.message || err) });
    }
}
for (const data of request.decode || []) {
    try {
        out.decoded.push(nodeToJson(await decodeBinaryNode(Buffer.from(data, 'base64'))));
    } catch (err) {
        out.decoded.push({ error: String(err?.message || err) });
    }
}
process.stdout.write(JSON.stringify(out) + '\n');
