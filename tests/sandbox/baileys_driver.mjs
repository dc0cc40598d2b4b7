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
//
// Messaging (stdin, one JSON command per line, on the open socket):
//   {"cmd":"send","to":JID,"text":T,"tag":X}     -> {"event":"sent","tag":X,"id":<message id>}
//   {"cmd":"read","keys":[{remoteJid,id,participant?}]} -> {"event":"read_sent","n":N}
//   {"cmd":"react","to":JID,"text":EMOJI,"key":{remoteJid,id,fromMe,participant?},"tag":X} -> "sent"
//   {"cmd":"group","jid":G,"tag":X}              -> {"event":"group","tag":X,"metadata":{...}}
//   {"cmd":"end"}                                -> closes the socket without logging out
// Incoming: {"event":"message","id","remoteJid","participant","fromMe","text","upsert":"notify|append"},
// {"event":"reaction","id","remoteJid","text","targetId","targetFromMe"},
// {"event":"offline","count":N} (end of the server's offline backlog), {"event":"undecryptable",...}, {"event":"status","id","remoteJid","status"} (messages.update),
// {"event":"receipt","id","remoteJid","userJid","readTimestamp","receiptTimestamp"} (groups).
import https from 'node:https';
import readline from 'node:readline';
import { parseArgs } from 'node:util';

import makeWASocket, { generateMessageIDV2, useMultiFileAuthState, WA_CERT_DETAILS } from '../interop/node_modules/baileys/lib/index.js';
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
let current = null; // the open socket, for stdin commands
// What this driver sent, by id, for Baileys' getMessage (its resend on a retry receipt). Baileys'
// own recent-message cache is keyed by the chat JID while a 1:1 retry receipt names the retrying
// device (from="user:device@..."), so without getMessage a 1:1 resend finds nothing; apps are
// expected to provide getMessage, as this driver does (bounded: the oldest entries are dropped).
const sentMessages = new Map();

// Commands run one after the other (a send completes before the next starts), so the order of
// "send" lines is the order the messages leave the socket.
let chain = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  chain = chain.then(() => runCommand(line));
});

async function runCommand(line) {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    emit('error', { where: 'stdin', error: String(err) });
    return;
  }
  try {
    if (!current) throw new Error('no open socket');
    if (cmd.cmd === 'send') {
      // Recorded before the send: a retry receipt can come back before sendMessage resolves.
      const messageId = generateMessageIDV2(current.user?.id);
      sentMessages.set(messageId, { conversation: cmd.text });
      if (sentMessages.size > 5000) sentMessages.delete(sentMessages.keys().next().value);
      const sent = await current.sendMessage(cmd.to, { text: cmd.text }, { messageId });
      emit('sent', { tag: cmd.tag ?? null, id: sent?.key?.id ?? null, to: cmd.to });
    } else if (cmd.cmd === 'react') {
      const sent = await current.sendMessage(cmd.to, { react: { text: cmd.text, key: cmd.key } });
      emit('sent', { tag: cmd.tag ?? null, id: sent?.key?.id ?? null, to: cmd.to });
    } else if (cmd.cmd === 'read') {
      await current.readMessages(cmd.keys);
      emit('read_sent', { n: cmd.keys.length, tag: cmd.tag ?? null });
    } else if (cmd.cmd === 'group') {
      const metadata = await current.groupMetadata(cmd.jid);
      emit('group', { tag: cmd.tag ?? null, metadata });
    } else if (cmd.cmd === 'end') {
      current.end(undefined);
    } else {
      throw new Error(`unknown command ${cmd.cmd}`);
    }
  } catch (err) {
    emit('command_failed', { cmd: cmd.cmd, tag: cmd.tag ?? null, error: String(err?.stack || err) });
  }
}

const textOf = (m) => m?.conversation ?? m?.extendedTextMessage?.text ?? null;

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
    // The sandbox phone sends no history sync: without this Baileys buffers every event for 20 s
    // after each login until its accountSyncCounter is > 0 ("awaiting history sync notification").
    shouldSyncHistoryMessage: () => false,
    connectTimeoutMs: 20000,
    getMessage: async (key) => sentMessages.get(key.id),
    defaultQueryTimeoutMs: 20000,
  };
  if (opt['qr-timeout']) config.qrTimeout = Number(opt['qr-timeout']);
  if (opt.url.startsWith('wss:')) config.agent = new https.Agent({ rejectUnauthorized: false });

  emit('socket', { n: mySocket, registered: Boolean(state.creds.me?.id), me: state.creds.me?.id ?? null });
  const sock = makeWASocket(config);
  sock.ev.on('creds.update', saveCreds);
  sock.ws.on('CB:ib,,offline', (node) => {
    const child = node.content?.find?.((c) => c.tag === 'offline');
    emit('offline', { n: mySocket, count: Number(child?.attrs?.count ?? -1) });
  });
  sock.ev.on('messages.upsert', ({ messages, type }) => {
    for (const msg of messages) {
      const base = { id: msg.key.id, remoteJid: msg.key.remoteJid, participant: msg.key.participant ?? null,
                     fromMe: !!msg.key.fromMe, upsert: type, t: Number(msg.messageTimestamp ?? 0) };
      if (msg.messageStubType === 2 /* CIPHERTEXT */) {
        emit('undecryptable', { ...base, why: msg.messageStubParameters ?? null });
      } else if (msg.message?.reactionMessage) {
        const r = msg.message.reactionMessage;
        emit('reaction', { ...base, text: r.text ?? '', targetId: r.key?.id ?? null, targetFromMe: !!r.key?.fromMe });
      } else if (textOf(msg.message) !== null) {
        emit('message', { ...base, text: textOf(msg.message) });
      }
    }
  });
  sock.ev.on('messages.update', (updates) => {
    for (const { key, update } of updates) {
      if (update.status !== undefined) emit('status', { id: key.id, remoteJid: key.remoteJid, status: update.status });
    }
  });
  sock.ev.on('message-receipt.update', (updates) => {
    for (const { key, receipt } of updates) {
      emit('receipt', { id: key.id, remoteJid: key.remoteJid, userJid: receipt.userJid,
                        readTimestamp: receipt.readTimestamp ?? null, receiptTimestamp: receipt.receiptTimestamp ?? null });
    }
  });

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
      current = sock;
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
      if (current === sock) current = null;
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
