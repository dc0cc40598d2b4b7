// Binary-node (WABinary) vectors: hand-picked protocol stanzas, targeted string/JID/length edge
// cases, random trees, decode-only inputs (tags Baileys never emits) and inputs Baileys rejects.
// Every encoding and decoding is Baileys' own (encodeBinaryNode / decodeBinaryNode).
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { decodeBinaryNode, encodeBinaryNode, S_WHATSAPP_NET } from 'baileys';
import { DOUBLE_BYTE_TOKENS, SINGLE_BYTE_TOKENS } from 'baileys/lib/WABinary/constants.js';

import { b64, INLINE_LIMIT, nodeToJson, patternBytes, Rng, sha256Hex } from './vectors_common.mjs';

const NIBBLE_CHARS = '0123456789-.';
const HEX_CHARS = '0123456789ABCDEF';
const UNICODE_SAMPLES = [
    'olá, mundo',
    'Grüße aus Köln',
    'Привет',
    'こんにちは世界',
    '👍🏽🎉',
    '🇧🇷 São Paulo',
    'emoji 😀 mixed ✓',
    'زبان فارسی',
    'a\u0000b',
    'tab\tnew\nline',
    '\u00e9\u0301',
    '𝔘𝔫𝔦𝔠𝔬𝔡𝔢'
];
const RAW_WORDS = [
    'pair-success',
    'md',
    'ib',
    'digest',
    'link_code_companion_reg',
    'unified_session',
    'pair-device-sign',
    'hello',
    'evolink',
    'Chrome (Mac OS)',
    'some value',
    'x'
];

const makeString = (rng, kind) => {
    switch (kind) {
        case 'token':
            return SINGLE_BYTE_TOKENS[1 + rng.int(SINGLE_BYTE_TOKENS.length - 1)];
        case 'double_token': {
            const dict = DOUBLE_BYTE_TOKENS[rng.int(DOUBLE_BYTE_TOKENS.length)];
            return dict[rng.int(dict.length)];
        }
        case 'nibble': {
            const len = rng.pick([1, 2, 3, 4, 7, 8, 15, 16, 63, 64, 126, 127, 1 + rng.int(127)]);
            let s = '';
            for (let i = 0; i < len; i++) s += rng.pick(NIBBLE_CHARS);
            return s;
        }
        case 'nibble_too_long': {
            let s = '';
            for (let i = 0; i < 128 + rng.int(3); i++) s += rng.pick(NIBBLE_CHARS);
            return s;
        }
        case 'hex': {
            const len = rng.pick([1, 2, 3, 5, 8, 31, 32, 126, 127, 1 + rng.int(127)]);
            let s = '';
            for (let i = 0; i < len; i++) s += rng.pick(HEX_CHARS);
            // make sure it is not nibble-eligible so HEX_8 is exercised
            const pos = rng.int(len);
            return s.slice(0, pos) + rng.pick('ABCDEF') + s.slice(pos + 1);
        }
        case 'hex_too_long': {
            let s = 'A';
            for (let i = 1; i < 128 + rng.int(2); i++) s += rng.pick(HEX_CHARS);
            return s;
        }
        case 'hex_lower': {
            let s = 'a';
            for (let i = 1; i < 2 + rng.int(40); i++) s += rng.pick('0123456789abcdef');
            return s;
        }
        case 'jid':
            return makeJid(rng);
        case 'raw':
            return rng.chance(0.5) ? rng.pick(RAW_WORDS) : randomAscii(rng, 1 + rng.int(40));
        case 'unicode':
            return rng.pick(UNICODE_SAMPLES);
        case 'raw_long':
            return randomAscii(rng, rng.pick([255, 256, 257, 1000, 4095, 4096]));
        case 'empty':
            return '';
        default:
            throw new Error('unknown string kind ' + kind);
    }
};

const randomAscii = (rng, len) => {
    const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.:/+=,;!?';
    let s = '';
    for (let i = 0; i < len; i++) s += rng.pick(alphabet);
    // at least one lowercase letter keeps it off the packed and token paths most of the time
    return s.replace(/^./, 'q');
};

const digits = (rng, min, max) => {
    const len = min + rng.int(max - min + 1);
    let s = String(1 + rng.int(9));
    for (let i = 1; i < len; i++) s += String(rng.int(10));
    return s;
};

const makeJid = (rng) => {
    const user = digits(rng, 8, 15);
    const dev = 1 + rng.int(99);
    switch (rng.int(13)) {
        case 0:
            return `${user}@s.whatsapp.net`;
        case 1:
            return `${user}:${dev}@s.whatsapp.net`;
        case 2:
            return `${user}@lid`;
        case 3:
            return `${user}:${dev}@lid`;
        case 4:
            return `${user}:${dev}@hosted`;
        case 5:
            return `${user}:${dev}@hosted.lid`;
        case 6:
            return `${user}-${digits(rng, 9, 10)}@g.us`;
        case 7:
            return S_WHATSAPP_NET;
        case 8:
            return `${user}@c.us`;
        case 9:
            return `${user}@broadcast`;
        case 10:
            return `${user}@newsletter`;
        case 11:
            return `${user}:${rng.int(2) === 0 ? 0 : 255}@s.whatsapp.net`;
        default:
            return `${user}@hosted`;
    }
};

const STRING_KINDS = [
    'token',
    'double_token',
    'nibble',
    'nibble_too_long',
    'hex',
    'hex_too_long',
    'hex_lower',
    'jid',
    'raw',
    'unicode',
    'raw_long',
    'empty'
];

const makeTag = (rng) => {
    const r = rng.int(10);
    if (r < 6) return makeString(rng, 'token');
    if (r < 8) return makeString(rng, 'double_token');
    return rng.pick(RAW_WORDS);
};

const makeAttrs = (rng, count) => {
    const attrs = {};
    let guard = 0;
    while (Object.keys(attrs).length < count && guard++ < count * 10) {
        const key = rng.chance(0.8) ? makeString(rng, 'token') : rng.pick(RAW_WORDS);
        if (key in attrs) continue;
        const kind = rng.pick(STRING_KINDS.filter((k) => k !== 'raw_long'));
        attrs[key] = makeString(rng, kind);
    }
    return attrs;
};

const makeNode = (rng, depth) => {
    const node = { tag: makeTag(rng), attrs: makeAttrs(rng, rng.int(5)) };
    const r = rng.int(10);
    if (r < 3) {
        // no content
    } else if (r < 5) {
        node.content = makeString(rng, rng.pick(STRING_KINDS));
    } else if (r < 7) {
        node.content = rng.bytes(rng.pick([0, 1, 2, 16, 32, 33, 64, 200]));
    } else if (depth > 0) {
        const n = rng.pick([0, 1, 1, 2, 3, 4]);
        node.content = [];
        for (let i = 0; i < n; i++) node.content.push(makeNode(rng, depth - 1));
    }
    return node;
};

/** Protocol stanzas as the two sides of the connect/link flow produce them. */
const handPicked = (rng) => {
    const refs = [];
    for (let i = 0; i < 6; i++) refs.push({ tag: 'ref', attrs: {}, content: Buffer.from(`2@${b64(rng.bytes(48))}`, 'utf8') });
    const preKeys = [];
    for (let i = 0; i < 30; i++) {
        const id = Buffer.alloc(3);
        id.writeUIntBE(1 + i, 0, 3);
        preKeys.push({
            tag: 'key',
            attrs: {},
            content: [
                { tag: 'id', attrs: {}, content: id },
                { tag: 'value', attrs: {}, content: rng.bytes(32) }
            ]
        });
    }
    const iq = (attrs, content) => ({ tag: 'iq', attrs, content });
    return [
        ['iq_ping_doc_example', iq({ id: '1.2-3', to: S_WHATSAPP_NET, type: 'get', xmlns: 'w:p' }, [{ tag: 'ping', attrs: {} }])],
        ['device_doc_example', { tag: 'device', attrs: { jid: '15550001111:7@s.whatsapp.net', lid: '987654321:7@lid' } }],
        ['pair_device_6_refs', iq({ from: S_WHATSAPP_NET, type: 'set', id: '1717.2323-1', xmlns: 'md' }, [{ tag: 'pair-device', attrs: {}, content: refs }])],
        ['pair_device_ack', { tag: 'iq', attrs: { to: S_WHATSAPP_NET, type: 'result', id: '1717.2323-1' } }],
        ['success_t_lid', { tag: 'success', attrs: { t: '1764312345', props: '28', abprops: '12', location: 'frc', lid: '987654321012345@lid', display_name: '', companion_enc_static: 'x9KjP0' } }],
        ['failure_401', { tag: 'failure', attrs: { reason: '401', location: 'frc' } }],
        ['failure_405', { tag: 'failure', attrs: { reason: '405' } }],
        ['stream_error_515', { tag: 'stream:error', attrs: { code: '515' } }],
        ['stream_error_401_device_removed', { tag: 'stream:error', attrs: { code: '401' }, content: [{ tag: 'conflict', attrs: { type: 'device_removed' } }] }],
        ['stream_error_replaced', { tag: 'stream:error', attrs: {}, content: [{ tag: 'conflict', attrs: { type: 'replaced' } }] }],
        ['stream_error_503', { tag: 'stream:error', attrs: { code: '503' } }],
        ['xmlstreamend', { tag: 'xmlstreamend', attrs: {} }],
        ['iq_ping_baileys', iq({ id: '45120.18830-12', to: S_WHATSAPP_NET, type: 'get', xmlns: 'w:p' }, [{ tag: 'ping', attrs: {} }])],
        ['iq_ping_result', iq({ from: S_WHATSAPP_NET, type: 'result', id: '45120.18830-12', t: '1764312399' })],
        ['iq_ping_whatsmeow_style', iq({ id: '123.45-6', to: S_WHATSAPP_NET, type: 'get', xmlns: 'w:p' })],
        ['iq_encrypt_count', iq({ id: '45120.18830-2', xmlns: 'encrypt', type: 'get', to: S_WHATSAPP_NET }, [{ tag: 'count', attrs: {} }])],
        ['iq_encrypt_count_result', iq({ from: S_WHATSAPP_NET, type: 'result', id: '45120.18830-2' }, [{ tag: 'count', attrs: { value: '0' } }])],
        [
            'iq_prekey_upload',
            iq({ xmlns: 'encrypt', type: 'set', to: S_WHATSAPP_NET, id: '45120.18830-3' }, [
                { tag: 'registration', attrs: {}, content: Buffer.from([0, 0, 0x2e, 0x9a]) },
                { tag: 'type', attrs: {}, content: Buffer.from([5]) },
                { tag: 'identity', attrs: {}, content: rng.bytes(32) },
                { tag: 'list', attrs: {}, content: preKeys },
                {
                    tag: 'skey',
                    attrs: {},
                    content: [
                        { tag: 'id', attrs: {}, content: Buffer.from([0, 0, 1]) },
                        { tag: 'value', attrs: {}, content: rng.bytes(32) },
                        { tag: 'signature', attrs: {}, content: rng.bytes(64) }
                    ]
                }
            ])
        ],
        ['iq_passive_active', iq({ to: S_WHATSAPP_NET, xmlns: 'passive', type: 'set', id: '45120.18830-4' }, [{ tag: 'active', attrs: {} }])],
        ['iq_digest', iq({ to: S_WHATSAPP_NET, type: 'get', xmlns: 'encrypt', id: '45120.18830-5' }, [{ tag: 'digest', attrs: {} }])],
        ['ack_notification', { tag: 'ack', attrs: { id: '3518727744', to: S_WHATSAPP_NET, class: 'notification', type: 'link_code_companion_reg' } }],
        ['ack_notification_participant', { tag: 'ack', attrs: { id: 'ABCDEF0123', to: '120363025246125486@g.us', class: 'notification', type: 'w:gp2', participant: '15550001111@s.whatsapp.net' } }],
        ['ib_unified_session', { tag: 'ib', attrs: {}, content: [{ tag: 'unified_session', attrs: { id: '283750000' } }] }],
        ['ib_edge_routing', { tag: 'ib', attrs: { from: S_WHATSAPP_NET }, content: [{ tag: 'edge_routing', attrs: {}, content: [{ tag: 'routing_info', attrs: {}, content: Buffer.from('08080805', 'hex') }] }] }],
        ['ib_dirty', { tag: 'ib', attrs: { from: S_WHATSAPP_NET }, content: [{ tag: 'dirty', attrs: { type: 'account_sync', timestamp: '1764312000' } }] }],
        ['notification_server_sync', { tag: 'notification', attrs: { from: S_WHATSAPP_NET, type: 'server_sync', id: '1234567', t: '1764312001' }, content: [{ tag: 'collection', attrs: { name: 'regular_high', version: '17' } }] }],
        ['notification_encrypt_count', { tag: 'notification', attrs: { from: S_WHATSAPP_NET, type: 'encrypt', id: '777', t: '1764312002' }, content: [{ tag: 'count', attrs: { value: '4' } }] }],
        ['iq_error_401', iq({ from: S_WHATSAPP_NET, type: 'error', id: '9.9-9' }, [{ tag: 'error', attrs: { code: '401', text: 'not-authorized' } }])],
        ['iq_result_empty_from_jid', iq({ from: S_WHATSAPP_NET, type: 'result', id: '8.8-8' })],
        ['presence_available', { tag: 'presence', attrs: { name: 'Evolink', type: 'available' } }],
        ['receipt_read', { tag: 'receipt', attrs: { id: '3EB0C767D71D1A1F0A2B', to: '5511999999999@s.whatsapp.net', type: 'read', t: '1764312003' } }],
        ['message_text_enc', { tag: 'message', attrs: { id: '3EB0B430B6F8F1D0E1A2', to: '5511999999999@s.whatsapp.net', type: 'text' }, content: [{ tag: 'enc', attrs: { v: '2', type: 'pkmsg' }, content: rng.bytes(180) }] }],
        ['iq_usync_like', iq({ to: S_WHATSAPP_NET, type: 'get', xmlns: 'usync', id: '1.1-1' }, [{ tag: 'usync', attrs: { sid: '1764312004', mode: 'query', last: 'true', index: '0', context: 'interactive' }, content: [{ tag: 'query', attrs: {}, content: [{ tag: 'devices', attrs: { version: '2' } }] }, { tag: 'list', attrs: {}, content: [{ tag: 'user', attrs: { jid: '5511999999999@s.whatsapp.net' } }] }] }])],
        ['iq_props_abt', iq({ to: S_WHATSAPP_NET, xmlns: 'abt', id: '1.1-2', type: 'get' }, [{ tag: 'props', attrs: { protocol: '1', hash: '' } }])],
        ['iq_blocklist', iq({ xmlns: 'blocklist', to: S_WHATSAPP_NET, type: 'get', id: '1.1-3' })],
        ['iq_privacy', iq({ xmlns: 'privacy', to: S_WHATSAPP_NET, type: 'get', id: '1.1-4' }, [{ tag: 'privacy', attrs: {} }])]
    ].map(([name, node]) => ({ name, node }));
};

/** Nodes aimed at a specific encoding rule or size boundary. */
const targeted = (rng) => {
    const out = [];
    const add = (name, node) => out.push({ name, node });
    // every string kind as attribute value and as content, several samples each
    for (const kind of STRING_KINDS) {
        for (let i = 0; i < 12; i++) {
            const s = makeString(rng, kind);
            if (kind !== 'raw_long') add(`attr_${kind}_${i}`, { tag: 'iq', attrs: { id: s, type: 'get' } });
            add(`content_${kind}_${i}`, { tag: 'body', attrs: {}, content: s });
        }
    }
    // fixed edge strings
    const nib127 = '0123456789-.'.repeat(11).slice(0, 127);
    const edges = {
        nibble_127: nib127,
        nibble_126: nib127.slice(0, 126),
        nibble_128: nib127 + '5',
        hex_127: 'F0E1D2C3B4A5968778695A4B3C2D1E0F'.repeat(4).slice(0, 127),
        hex_128: 'F0E1D2C3B4A5968778695A4B3C2D1E0F'.repeat(4),
        nibble_odd_1: '7',
        nibble_dot: '.',
        nibble_dash: '-',
        hex_single: 'A',
        hex_odd: 'ABC',
        hex_even: 'AB',
        token_zero_string: '0',
        token_s_whatsapp_net: 's.whatsapp.net',
        server_jid: '@s.whatsapp.net',
        jid_pair_user: '15550001111@s.whatsapp.net',
        ad_jid_device_0: '15550001111:0@s.whatsapp.net',
        ad_jid_device_1: '15550001111:1@s.whatsapp.net',
        ad_jid_device_255: '15550001111:255@s.whatsapp.net',
        ad_jid_lid_device: '987654321012345:7@lid',
        ad_jid_hosted: '15550001111:99@hosted',
        ad_jid_hosted_lid: '987654321012345:99@hosted.lid',
        jid_pair_lid_no_device: '987654321012345@lid',
        jid_pair_hosted_no_device: '15550001111@hosted',
        jid_group: '120363025246125486@g.us',
        jid_broadcast: 'status@broadcast',
        jid_raw_server: 'someone@example.org',
        jid_raw_user: 'john.doe@s.whatsapp.net',
        jid_msgr_pair: '100012345678901@msgr',
        jid_interop_pair: '5-100012345678901@interop',
        jid_agent_domain: '15550001111_1:2@s.whatsapp.net',
        empty: '',
        space: ' ',
        unicode_snowman: '☃',
        raw_255: 'q'.repeat(255),
        raw_256: 'q'.repeat(256),
        utf8_255_bytes: 'é'.repeat(127) + 'q',
        utf8_256_bytes: 'é'.repeat(128)
    };
    for (const [name, s] of Object.entries(edges)) {
        add(`edge_attr_${name}`, { tag: 'iq', attrs: { to: s } });
        add(`edge_content_${name}`, { tag: 'body', attrs: {}, content: s });
    }
    // binary payload sizes around each length-tag boundary
    for (const len of [0, 1, 255, 256, 257, 4096]) {
        add(`bytes_${len}`, { tag: 'enc', attrs: { v: '2', type: 'msg' }, content: rng.bytes(len) });
    }
    for (const [len, mul, add_] of [
        [65535, 13, 1],
        [65536, 13, 1],
        [(1 << 20) - 1, 31, 7],
        [1 << 20, 31, 7],
        [(1 << 20) + 1, 97, 3]
    ]) {
        const pattern = { length: len, mul, add: add_ };
        add(`bytes_pattern_${len}`, { tag: 'enc', attrs: { type: 'msg' }, content: patternBytes(pattern), pattern });
    }
    // list sizes: LIST_EMPTY content, LIST_8 edge, LIST_16
    add('children_empty_list', { tag: 'list', attrs: {}, content: [] });
    for (const n of [1, 254, 255, 256, 300, 1000]) {
        const kids = [];
        for (let i = 0; i < n; i++) kids.push({ tag: 'item', attrs: { id: String(i) } });
        add(`children_${n}`, { tag: 'list', attrs: {}, content: kids });
    }
    // attribute counts pushing the node's own list size across 255/256
    for (const [n, withContent] of [
        [126, true],
        [127, false],
        [127, true],
        [128, true]
    ]) {
        const attrs = {};
        for (let i = 0; i < n; i++) attrs[`k${i}`] = `v${i}`;
        add(`attrs_${n}${withContent ? '_with_content' : ''}`, { tag: 'iq', attrs, content: withContent ? 'q' : undefined });
    }
    // nesting
    for (const depth of [2, 8, 16, 32]) {
        let node = { tag: 'leaf', attrs: { depth: String(depth) }, content: Buffer.from('end') };
        for (let i = 0; i < depth; i++) node = { tag: i % 2 ? 'list' : 'item', attrs: {}, content: [node] };
        add(`nested_${depth}`, node);
    }
    // undefined/null attributes are skipped by Baileys
    add('attr_undefined_skipped', { tag: 'iq', attrs: { id: '1', type: undefined, to: S_WHATSAPP_NET } });
    add('attr_null_skipped', { tag: 'iq', attrs: { id: '2', type: null, xmlns: 'w:p' } });
    return out;
};

/** Bytes Baileys never produces but must decode: FB/interop JIDs, zlib, non-minimal lengths. */
const decodeOnly = () => {
    const tok = (s) => {
        const i = SINGLE_BYTE_TOKENS.indexOf(s);
        assert.ok(i > 0, s);
        return i;
    };
    const raw = (s) => [252, Buffer.byteLength(s), ...Buffer.from(s)];
    const nibble = (s) => {
        const bytes = [255, Math.ceil(s.length / 2) | (s.length % 2 ? 128 : 0)];
        const v = (c) => (c === '-' ? 10 : c === '.' ? 11 : Number(c));
        for (let i = 0; i < s.length; i += 2) bytes.push((v(s[i]) << 4) | (i + 1 < s.length ? v(s[i + 1]) : 15));
        return bytes;
    };
    const iqWith = (valueBytes) => [0, 248, 3, tok('iq'), tok('from'), ...valueBytes];
    const cases = [
        ['fb_jid', iqWith([246, ...nibble('100012345678901'), 0x00, 0x03, ...raw('msgr')])],
        ['fb_jid_device_0', iqWith([246, ...nibble('100012345678901'), 0x00, 0x00, ...raw('msgr')])],
        ['interop_jid', iqWith([245, ...nibble('5511999999999'), 0x00, 0x02, 0x00, 0x05, ...raw('interop')])],
        ['interop_jid_no_server', iqWith([245, ...nibble('5511999999999'), 0x00, 0x02, 0x00, 0x05])],
        ['ad_jid_domain_128', iqWith([247, 128, 5, ...nibble('15550001111')])],
        ['ad_jid_domain_129', iqWith([247, 129, 5, ...nibble('987654321012345')])],
        ['ad_jid_device_0', iqWith([247, 0, 0, ...nibble('15550001111')])],
        ['ad_jid_unknown_domain', iqWith([247, 7, 3, ...nibble('15550001111')])],
        ['jid_pair_token_user', iqWith([250, tok('status'), ...raw('broadcast')])],
        ['list16_small', [0, 249, 0, 3, tok('iq'), tok('type'), tok('get')]],
        ['list8_empty_children', [0, 248, 2, tok('iq'), 248, 0]],
        ['list16_children', [0, 248, 2, tok('iq'), 249, 0, 1, 248, 1, tok('ping')]],
        ['binary20_small_string', iqWith([253, 0x00, 0x00, 0x03, ...Buffer.from('abc')])],
        ['binary32_small_string', iqWith([254, 0, 0, 0, 3, ...Buffer.from('abc')])],
        ['binary20_content', [0, 248, 2, tok('iq'), 253, 0xf0, 0x00, 0x02, 0xaa, 0xbb]],
        ['binary32_content', [0, 248, 2, tok('iq'), 254, 0, 0, 0, 2, 0xaa, 0xbb]],
        ['hex8_lower_nibbles', iqWith([251, 0x82, 0xab, 0xcf])],
        ['nibble_even_with_pad', iqWith([255, 0x02, 0x12, 0x3f])],
        ['string_content_token', [0, 248, 2, tok('iq'), tok('result')]],
        ['dictionary_3_last', iqWith([239, DOUBLE_BYTE_TOKENS[3].length - 1])],
    ];
    const zlibBody = (node) => Buffer.concat([Buffer.from([2]), deflateSync(encodeBinaryNode(node).subarray(1))]);
    const compressed = [
        ['zlib_ping', zlibBody({ tag: 'iq', attrs: { id: '1.2-3', type: 'get', xmlns: 'w:p' }, content: [{ tag: 'ping', attrs: {} }] })],
        ['zlib_large', zlibBody({ tag: 'list', attrs: {}, content: Array.from({ length: 400 }, (_, i) => ({ tag: 'item', attrs: { id: String(i) } })) })],
        ['zlib_flags_6', Buffer.concat([Buffer.from([6]), deflateSync(encodeBinaryNode({ tag: 'ack', attrs: { id: '7' } }).subarray(1))])]
    ];
    return [...cases.map(([n, bytes]) => [n, Buffer.from(bytes)]), ...compressed];
};

/** Inputs Baileys refuses; evolink must raise a DecodeError for each. */
const rejected = () => [
    ['empty_after_flags', [0]],
    ['list_size_zero', [0, 0]],
    ['truncated_list8', [0, 248]],
    ['truncated_attr', [0, 248, 3, 25, 4]],
    ['truncated_binary8', [0, 248, 2, 25, 252, 10, 1, 2]],
    ['truncated_binary20', [0, 248, 2, 25, 253, 0, 1]],
    ['truncated_binary32_len', [0, 248, 2, 25, 254, 0, 0]],
    ['truncated_children', [0, 248, 2, 25, 248, 3, 248, 1, 86]],
    ['invalid_tag_240', [0, 248, 1, 240]],
    ['invalid_tag_244', [0, 248, 3, 25, 4, 244]],
    ['header_empty_string', [0, 248, 1, 252, 0]],
    ['invalid_nibble_code', [0, 248, 3, 25, 4, 255, 1, 0xc0]],
    ['jid_pair_empty_server', [0, 248, 3, 25, 6, 250, 0, 0]],
    ['list_tag_as_attr_value', [0, 248, 3, 25, 4, 248]],
    ['truncated_nibble', [0, 248, 3, 25, 4, 255, 3, 0x12]],
    ['bad_zlib', [2, 0x78, 0x9c, 0xff, 0xff]]
].map(([n, bytes]) => [n, Buffer.from(bytes)]);

const encodedFields = (enc) =>
    enc.length > INLINE_LIMIT
        ? { encoded_sha256: sha256Hex(enc), encoded_length: enc.length, encoded_head_b64: b64(enc.subarray(0, 64)) }
        : { encoded_b64: b64(enc) };

export const binaryNodes = async (pairingStanzas) => {
    const rng = new Rng('evolink-interop-binary-v1');
    const inputs = [
        ...handPicked(rng).map((v) => ({ ...v, category: 'stanza' })),
        ...pairingStanzas.map((v) => ({ ...v, category: 'stanza' })),
        ...targeted(rng).map((v) => ({ ...v, category: 'targeted' }))
    ];
    for (let i = 0; i < 260; i++) inputs.push({ name: `random_${i}`, category: 'random', node: makeNode(rng, 4) });

    // JS-quirk JID strings: Baileys' jidDecode/`+device`/parseInt semantics decide the bytes, and
    // some of them Baileys cannot even decode again (empty server -> "invalid jid pair")
    const quirks = [
        'a@b@c', 'foo@', '@', '@lid', ':1@lid', '123:1@', '123:300@s.whatsapp.net', '123:abc@s.whatsapp.net',
        '123_x:1@s.whatsapp.net', '123_300:1@s.whatsapp.net', '1:2:3@s.whatsapp.net', 'a_b_c@s.whatsapp.net',
        'x@msgr', '12:01@s.whatsapp.net', '12:1e1@s.whatsapp.net', '12: 1@s.whatsapp.net', '12:-1@s.whatsapp.net',
        '12:0x10@s.whatsapp.net', '\u{1F600}@s.whatsapp.net'
    ];
    for (const [i, q] of quirks.entries()) {
        inputs.push({ name: `jid_quirk_${i}`, category: 'quirk', node: { tag: 'iq', attrs: { to: q } } });
    }

    const vectors = [];
    const seen = new Set();
    for (const { name, category, node } of inputs) {
        assert.ok(!seen.has(name), `duplicate vector name ${name}`);
        seen.add(name);
        const enc = encodeBinaryNode(node);
        let dec;
        try {
            dec = await decodeBinaryNode(enc);
        } catch (err) {
            // only the quirk vectors may produce bytes Baileys itself cannot read back
            assert.equal(category, 'quirk', `Baileys cannot decode its own encoding of ${name}: ${err}`);
            vectors.push({ name, category, node: nodeToJson(node), ...encodedFields(enc), baileys_error: String(err.message || err) });
            continue;
        }
        assert.equal(dec.tag, node.tag);
        vectors.push({ name, category, node: nodeToJson(node), ...encodedFields(enc), decoded: nodeToJson(dec) });
    }
    for (const [name, bytes] of decodeOnly()) {
        const dec = await decodeBinaryNode(bytes);
        vectors.push({ name, category: 'decode_only', encoded_b64: b64(bytes), decoded: nodeToJson(dec) });
    }
    // Baileys ignores bytes after the node; a strict decoder may refuse them (see docs/interop.md)
    for (const [name, bytes] of [['trailing_bytes_ignored', Buffer.from([0, 248, 1, SINGLE_BYTE_TOKENS.indexOf('iq'), 0xde, 0xad])]]) {
        const dec = await decodeBinaryNode(bytes);
        vectors.push({ name, category: 'decode_lenient', encoded_b64: b64(bytes), decoded: nodeToJson(dec) });
    }
    for (const [name, bytes] of rejected()) {
        let error = null;
        try {
            await decodeBinaryNode(bytes);
        } catch (err) {
            error = String(err.message || err);
        }
        assert.ok(error, `Baileys unexpectedly accepted ${name}`);
        vectors.push({ name, category: 'rejected', encoded_b64: b64(bytes), baileys_error: error });
    }
    return {
        inline_limit: INLINE_LIMIT,
        content_forms: {
            text: 'string content',
            bytes_b64: 'bytes content, base64',
            nodes: 'child nodes',
            bytes_pattern: 'bytes content: byte[i] = (i * mul + add) mod 256 for i < length (large inputs only)',
            bytes_sha256: 'large decoded bytes content: sha256 hex + length'
        },
        vectors
    };
};
