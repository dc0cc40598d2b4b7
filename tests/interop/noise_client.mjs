// Baileys' client side of the Noise handshake, replayable: given the same keys and inputs it
// produces the same bytes, so a test can drive a live handshake in stages (one process per stage)
// without an interactive pipe.
//
// stdin JSON:
//   client_ephemeral, client_static: hex private keys
//   routing_info: hex | null              (ED intro when set)
//   client_payload: hex                   (ClientPayload bytes for the client finish)
//   server_hello: hex | absent            (stage 2+: the responder's HandshakeMessage)
//   client_nodes: [node-json]             (stage 2+: sent after the handshake)
//   server_stream: base64 | absent        (stage 3: framed transport data from the server)
//   root_public: hex | absent             (Baileys' trust root; also used to check cert_chain)
//   cert_chain: hex | absent              (check its signatures with curve25519-js)
// stdout JSON: {first_message, client_finish_wire, client_frames, decoded, cert}
import { encodeBinaryNode, makeNoiseHandler, NOISE_WA_HEADER, proto, WA_CERT_DETAILS } from 'baileys';
import curveJs from 'curve25519-js';

import { hex, jsonToNode, keyPairFrom, nodeToJson, readStdin, silentLogger } from './vectors_common.mjs';

const req = JSON.parse(await readStdin());
const ephemeral = keyPairFrom(Buffer.from(req.client_ephemeral, 'hex'));
const staticKp = keyPairFrom(Buffer.from(req.client_static, 'hex'));
const routingInfo = req.routing_info ? Buffer.from(req.routing_info, 'hex') : undefined;
const out = { first_message: null, client_finish_wire: null, client_frames: [], decoded: [], cert: null };

if (req.root_public) WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(req.root_public, 'hex');
const noise = makeNoiseHandler({ keyPair: ephemeral, NOISE_HEADER: NOISE_WA_HEADER, logger: silentLogger, routingInfo });
const hello = proto.HandshakeMessage.encode(proto.HandshakeMessage.fromObject({ clientHello: { ephemeral: ephemeral.public } })).finish();
out.first_message = hex(noise.encodeFrame(hello));

if (req.server_hello) {
    const handshake = proto.HandshakeMessage.decode(Buffer.from(req.server_hello, 'hex'));
    const keyEnc = noise.processHandshake(handshake, staticKp);
    const payloadEnc = noise.encrypt(Buffer.from(req.client_payload, 'hex'));
    const finish = proto.HandshakeMessage.encode({ clientFinish: { static: keyEnc, payload: payloadEnc } }).finish();
    out.client_finish_wire = hex(noise.encodeFrame(finish));
    await noise.finishInit();
    for (const json of req.client_nodes || []) out.client_frames.push(hex(noise.encodeFrame(encodeBinaryNode(jsonToNode(json)))));

    if (req.server_stream) {
        const stream = Buffer.from(req.server_stream, 'base64');
        // uneven chunks, as a websocket may deliver them
        for (let off = 0, i = 0; off < stream.length; i++) {
            const size = [1, 5, 17, 400][i % 4];
            await noise.decodeFrame(stream.subarray(off, off + size), (node) => out.decoded.push(nodeToJson(node)));
            off += size;
        }
    }
}
if (req.cert_chain) {
    // Baileys' processHandshake would accept any well-formed chain (its Curve.verify cannot fail
    // for well-formed input), so check the signatures with curve25519-js, a real verifier.
    const chain = proto.CertChain.decode(Buffer.from(req.cert_chain, 'hex'));
    const inter = proto.CertChain.NoiseCertificate.Details.decode(chain.intermediate.details);
    const root = Buffer.from(req.root_public, 'hex');
    out.cert = {
        intermediate_signature: curveJs.verify(root, chain.intermediate.details, chain.intermediate.signature),
        leaf_signature: curveJs.verify(Buffer.from(inter.key), chain.leaf.details, chain.leaf.signature),
        intermediate_issuer_serial: inter.issuerSerial,
        leaf_key: hex(proto.CertChain.NoiseCertificate.Details.decode(chain.leaf.details).key)
    };
}
process.stdout.write(JSON.stringify(out) + '\n');

