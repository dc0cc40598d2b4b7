// Shared helpers for the interop vector generator and the live helper scripts.
// Everything here is deterministic: the PRNG is a SHA-256 counter stream so a re-run of the
// generator writes byte-identical vector files.
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';

/** SHA-256 counter-mode byte stream seeded by a label; not for secrets, only for reproducible vectors. */
export class Rng {
    constructor(seed) {
        this.seed = Buffer.from(String(seed), 'utf8');
        this.counter = 0;
        this.pool = Buffer.alloc(0);
    }
    bytes(n) {
        const chunks = [this.pool];
        let have = this.pool.length;
        while (have < n) {
            const ctr = Buffer.alloc(8);
            ctr.writeBigUInt64BE(BigInt(this.counter++));
            const block = createHash('sha256').update(this.seed).update(ctr).digest();
            chunks.push(block);
            have += block.length;
        }
        const all = Buffer.concat(chunks);
        this.pool = all.subarray(n);
        return Buffer.from(all.subarray(0, n));
    }
    /** uniform integer in [0, n) for n <= 2^32 */
    int(n) {
        if (n <= 0) throw new Error('Rng.int: n must be positive');
        return this.bytes(4).readUInt32BE() % n;
    }
    pick(list) {
        return list[this.int(list.length)];
    }
    chance(p) {
        return this.int(1_000_000) < p * 1_000_000;
    }
}

const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** X25519 public key for a raw 32-byte private key, via node:crypto (independent of Baileys). */
export const x25519Public = (priv) => {
    const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, priv]), format: 'der', type: 'pkcs8' });
    return Buffer.from(createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(12));
};

export const keyPairFrom = (priv) => ({ private: Buffer.from(priv), public: x25519Public(priv) });

export const sha256Hex = (buf) => createHash('sha256').update(buf).digest('hex');
export const b64 = (buf) => Buffer.from(buf).toString('base64');
export const hex = (buf) => Buffer.from(buf).toString('hex');

/** Byte pattern used for payloads too big to store inline: byte[i] = (i * mul + add) mod 256. */
export const patternBytes = ({ length, mul, add }) => {
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) out[i] = (i * mul + add) & 0xff;
    return out;
};

/** Inputs above this size are stored as a pattern description plus hashes, not inline. */
export const INLINE_LIMIT = 16 * 1024;

const isBytes = (v) => Buffer.isBuffer(v) || v instanceof Uint8Array;

/**
 * JSON form of a node's content:
 * null | {text} | {bytes_b64} | {nodes: [...]} | {bytes_pattern: {length, mul, add}} (input only)
 * | {bytes_sha256, length} (large decoded payloads).
 */
export const contentToJson = (content, pattern) => {
    if (content === undefined || content === null) return null;
    if (typeof content === 'string') return { text: content };
    if (isBytes(content)) {
        if (content.length > INLINE_LIMIT) {
            return pattern
                ? { bytes_pattern: pattern }
                : { bytes_sha256: sha256Hex(content), length: content.length };
        }
        return { bytes_b64: b64(content) };
    }
    if (Array.isArray(content)) return { nodes: content.map((n) => nodeToJson(n)) };
    throw new Error(`unsupported content type ${typeof content}`);
};

export const nodeToJson = (node) => {
    const out = { tag: node.tag, attrs: {} };
    for (const [k, v] of Object.entries(node.attrs || {})) out.attrs[k] = v;
    out.content = contentToJson(node.content, node.pattern);
    return out;
};

/** Inverse of nodeToJson for inputs (used by live helper scripts reading JSON nodes). */
export const jsonToNode = (json) => {
    const node = { tag: json.tag, attrs: { ...(json.attrs || {}) } };
    const c = json.content;
    if (c === null || c === undefined) return node;
    if ('text' in c) node.content = c.text;
    else if ('bytes_b64' in c) node.content = Buffer.from(c.bytes_b64, 'base64');
    else if ('bytes_pattern' in c) node.content = patternBytes(c.bytes_pattern);
    else if ('nodes' in c) node.content = c.nodes.map(jsonToNode);
    else throw new Error('unknown content form ' + Object.keys(c).join(','));
    return node;
};

/** Top-level keys one per line; arrays one compact item per line (small files, readable diffs). */
export const writeJson = (path, value) => {
    const field = (v) =>
        Array.isArray(v) && v.length > 0 && typeof v[0] === 'object'
            ? '[\n' + v.map((item) => '  ' + JSON.stringify(item)).join(',\n') + '\n ]'
            : JSON.stringify(v);
    const body = Object.entries(value).map(([k, v]) => ` ${JSON.stringify(k)}: ${field(v)}`);
    writeFileSync(path, '{\n' + body.join(',\n') + '\n}\n');
};

export const readStdin = async () => {
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    return Buffer.concat(chunks).toString('utf8');
};

/** Minimal logger object satisfying what Baileys' noise handler calls. */
export const silentLogger = {
    level: 'silent',
    child() {
        return silentLogger;
    },
    trace() {},
    debug() {},
    info() {},
    warn() {},
    error() {}
};
