// Drives the unmodified Baileys 7.0.0-rc14 client against the evolink sandbox.
//
// Prints one JSON object per line on stdout ({"event": ...}); pytest reads them.
//
//   node baileys_driver.mjs --url ws://127.0.0.1:PORT/ws/chat --root-key HEX --auth DIR
//        [--mode qr|code|login] [--phone DIGITS] [--qr-timeout MS] [--keepalive MS]
//        [--hold-ms MS] [--until open|close] [--no-init-queries] [--restarts N]
//
// --mode qr     show QR codes (events "qr"); the test scans them through the admin API
// --mode code   on the first QR, call requestPairingCode(--phone) (event "pairing_code")
// --mode login  expect stored creds in --auth; any "qr" event means the login failed
// After 515 (restart required) the driver opens a new socket with the saved creds, exactly as
// the Baileys README example does (Baileys does not reconnect by itself).
// --until open   exit 0 after the first "open" (+ --hold-ms)
// --until close  keep running until a close other than 515, then exit 0
import https from 'node:https';
import { parseArgs } from 'node:util';

import makeWASocket, { useMultiFileAuthState, WA_CERT_DETAILS } from '../interop/node_modules/baileys/lib/index.js';
import pino from '../interop/node_modules/pino/pino.js';

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    'root-key': { type: 'string' },
    auth: { type: 'string' },
    mode: { type: 'string', default: 'qr' },
    phone: { type: 'string' },
    'qr-timeout': { type: 'string' },
    keepalive: { type: 'string', default: '30000' },
    'hold-ms': { type: 'string', default: '0' },
    until: { type: 'string', default: 'close' },
    'no-init-queries': { type: 'boolean', default: false },
    restarts: { type: 'string', default: '1' },
    'log-level': { type: 'string', default: 'silent' },
  },
});

const emit = (event, data = {}) => process.stdout.write(JSON.stringify({ event, t: Date.now(), ...data }) + '\n');

if (!opt.url || !opt['root-key'] || !opt.auth) {
  emit('fatal', { error: '--url, --root-key and --auth are required' });
  process.exit(2);
}
// Trust the sandbox root instead of WhatsApp's (the exported object is read at handshake time).
WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(opt['root-key'], 'hex');

const logger = pino({ level: opt['log-level'] }, pino.destination(2));
const keepAliveIntervalMs = Number(opt.keepalive);
const holdMs = Number(opt['hold-ms']);
let restartsLeft = Number(opt.restarts);
let socketNo = 0;
let pairingRequested = false;

process.on('unhandledRejection', (err) => emit('error', { where: 'unhandledRejection', error: String(err?.stack || err) }));

async function startSocket() {
  socketNo += 1;
  const mySocket = socketNo;
  const { state, saveCreds } = await useMultiFileAuthState(opt.auth);
  const config = {
    waWebSocketUrl: opt.url,
    auth: state,
    logger,
    keepAliveIntervalMs,
    fireInitQueries: !opt['no-init-queries'],
    markOnlineOnConnect: false,
    syncFullHistory: false,
    connectTimeoutMs: 20000,
    defaultQueryTimeoutMs: 20000,
  };
  if (opt['qr-timeout']) config.qrTimeout = Number(opt['qr-timeout']);
  if (opt.url.startsWith('wss:')) config.agent = new https.Agent({ rejectUnauthorized: false });

  emit('socket', { n: mySocket, registered: Boolean(state.creds.me?.id), me: state.creds.me?.id ?? null });
  const sock = makeWASocket(config);
  sock.ev.on('creds.update', saveCreds);

  let pongs = 0;
  let opened = false;
  sock.ws.on('frame', (node) => {
    // Keepalive answers: <iq type="result"/> without content, counted after open.
    if (opened && node?.tag === 'iq' && node.attrs?.type === 'result' && !node.content) pongs += 1;
  });

  sock.ev.on('connection.update', async (update) => {
    const { connection, lastDisconnect, qr, isNewLogin } = update;
    if (qr) {
      emit('qr', { n: mySocket, qr });
      if (opt.mode === 'code' && !pairingRequested) {
        pairingRequested = true;
        try {
          const code = await sock.requestPairingCode(opt.phone);
          emit('pairing_code', { n: mySocket, code });
        } catch (err) {
          emit('error', { where: 'requestPairingCode', error: String(err?.stack || err) });
        }
      }
    }
    if (isNewLogin) emit('paired', { n: mySocket, me: state.creds.me?.id ?? null });
    if (connection === 'open') {
      opened = true;
      emit('open', { n: mySocket, me: state.creds.me?.id ?? null, lid: state.creds.me?.lid ?? null });
      if (holdMs > 0) {
        await new Promise((resolve) => setTimeout(resolve, holdMs));
        emit('held', { n: mySocket, pongs, still_open: sock.ws.isOpen });
      }
      if (opt.until === 'open') {
        await saveCreds();
        sock.end(undefined);
        emit('exit', { reason: 'open reached' });
        setTimeout(() => process.exit(0), 100);
      }
    }
    if (connection === 'close') {
      const statusCode = lastDisconnect?.error?.output?.statusCode ?? null;
      emit('close', { n: mySocket, status: statusCode, message: String(lastDisconnect?.error?.message ?? '') });
      if (statusCode === 515 && restartsLeft > 0) {
        restartsLeft -= 1;
        startSocket().catch((err) => emit('fatal', { error: String(err?.stack || err) }));
        return;
      }
      emit('exit', { reason: 'closed', status: statusCode });
      setTimeout(() => process.exit(0), 100);
    }
  });
}

startSocket().catch((err) => {
  emit('fatal', { error: String(err?.stack || err) });
  process.exit(1);
});
