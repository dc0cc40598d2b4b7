// Baileys side of bench/messaging.py: N Baileys 7.0.0-rc14 sockets in one Node process against the
// same sandbox, driven and measured exactly like the evolink worker.
//
// Usage: node bench/baileys_messaging.mjs '<config json>'
//   config = {ws_url, admin_url, root_public_key, accounts: [..N..], peers: [..N..], concurrency}
// Links every account by QR (the sandbox phone scans it), prints {"event":"ready","linked":N}, then
// reads one JSON command per line on stdin:
//   {"cmd":"send","rate":R,"count":C}  C texts, round-robin socket i -> peer i, one started every 1/R s
//       (open loop); latency = sendMessage call -> first DELIVERY_ACK of that id (the peer phone
//       decrypted it and receipted); prints {"event":"sent", sent, failed, cpu_s, wall_s, latencies_ms}
//   {"cmd":"recv","count":C,"within":S}  prints {"event":"counting"}, then counts texts arriving
//       (messages.upsert notify) until C arrived or S seconds; prints {"event":"received", received, cpu_s, wall_s}
//   {"cmd":"quit"}
import readline from 'node:readline'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const B = await import(pathToFileURL(join(here, '..', 'tests', 'interop', 'node_modules', 'baileys', 'lib', 'index.js')).href)
const pino = (await import(pathToFileURL(join(here, '..', 'tests', 'interop', 'node_modules', 'pino', 'pino.js')).href)).default

const cfg = JSON.parse(process.argv[2])
B.WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(cfg.root_public_key, 'hex')
const logger = pino({ level: 'silent' })
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const errors = []

function memoryAuth () {
  const creds = B.initAuthCreds()
  const keys = new Map()
  return {
    creds,
    keys: {
      get: async (type, ids) => {
        const res = {}
        for (const id of ids) {
          const v = keys.get(`${type}-${id}`)
          if (v !== undefined) res[id] = v
        }
        return res
      },
      set: async (data) => {
        for (const type in data) {
          for (const id in data[type]) {
            const v = data[type][id]
            if (v) keys.set(`${type}-${id}`, v)
            else keys.delete(`${type}-${id}`)
          }
        }
      }
    }
  }
}

const delivered = new Map() // message id -> resolve(time)
let receivedCount = 0
let onReceived = null

function connect (auth, phone) {
  return new Promise((resolve, reject) => {
    let scanned = false
    const start = () => {
      const sock = B.makeWASocket({
        waWebSocketUrl: cfg.ws_url, auth, logger, printQRInTerminal: false, markOnlineOnConnect: false,
        fireInitQueries: false, syncFullHistory: false, shouldSyncHistoryMessage: () => false,
        browser: ['Mac OS', 'Chrome', '14.4.1'], connectTimeoutMs: 60000, defaultQueryTimeoutMs: 60000
      })
      sock.ev.on('creds.update', (u) => Object.assign(auth.creds, u))
      sock.ev.on('messages.update', (updates) => {
        for (const { key, update } of updates) {
          if (update.status !== undefined && update.status >= 3) {
            const done = delivered.get(key.id)
            if (done) { delivered.delete(key.id); done(performance.now()) }
          }
        }
      })
      sock.ev.on('messages.upsert', ({ messages, type }) => {
        if (type !== 'notify') return
        for (const m of messages) {
          if (!m.key.fromMe && (m.message?.conversation || m.message?.extendedTextMessage)) {
            receivedCount++
            if (onReceived) onReceived()
          }
        }
      })
      sock.ev.on('connection.update', async (u) => {
        if (u.qr && !scanned) {
          scanned = true
          try {
            const r = await fetch(`${cfg.admin_url}/admin/phones/${phone}/scan`, {
              method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ qr: u.qr })
            })
            if (!r.ok) reject(new Error(`scan ${r.status} ${await r.text()}`))
          } catch (e) { reject(e) }
        }
        if (u.connection === 'open') resolve(sock)
        if (u.connection === 'close') {
          const code = u.lastDisconnect?.error?.output?.statusCode
          if (code === 515) start()
          else reject(new Error(`closed ${code}`))
        }
      })
    }
    start()
  })
}

async function pool (items, limit, fn) {
  const results = new Array(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      try { results[i] = await fn(items[i], i) } catch (e) { errors.push(String(e)); results[i] = null }
    }
  }))
  return results
}

const cpuSeconds = (since) => { const u = process.cpuUsage(since); return (u.user + u.system) / 1e6 }
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const socks = await pool(cfg.accounts, cfg.concurrency, (phone) => connect(memoryAuth(), phone))
out({ event: 'ready', linked: socks.filter(Boolean).length, errors: errors.slice(0, 5) })

async function sendPhase (rate, count) {
  const latencies = []
  let failed = 0
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const pending = []
  for (let k = 0; k < count; k++) {
    const wait = t0 + (k * 1000) / rate - performance.now()
    if (wait > 0) await sleep(wait)
    const i = k % socks.length
    const sock = socks[i]
    const to = `${cfg.peers[i]}@s.whatsapp.net`
    pending.push((async () => {
      const start = performance.now()
      try {
        const id = B.generateMessageIDV2(sock.user?.id)
        const got = new Promise((resolve) => delivered.set(id, resolve))
        await sock.sendMessage(to, { text: `b-${k}` }, { messageId: id })
        const at = await Promise.race([got, sleep(30000).then(() => null)])
        if (at === null) { failed++; delivered.delete(id) } else latencies.push(at - start)
      } catch (e) { failed++; if (errors.length < 5) errors.push(String(e)) }
    })())
  }
  const startedS = (performance.now() - t0) / 1000
  await Promise.all(pending)
  return { event: 'sent', sent: count - failed, failed, started_s: startedS, cpu_s: cpuSeconds(cpu0), wall_s: (performance.now() - t0) / 1000, latencies_ms: latencies, errors: errors.slice(0, 5) }
}

async function recvPhase (count, within) {
  const start = receivedCount
  out({ event: 'counting' })
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.race([
    new Promise((resolve) => { onReceived = () => { if (receivedCount - start >= count) resolve() }; onReceived() }),
    sleep(within * 1000)
  ])
  onReceived = null
  return { event: 'received', received: receivedCount - start, cpu_s: cpuSeconds(cpu0), wall_s: (performance.now() - t0) / 1000 }
}

const rl = readline.createInterface({ input: process.stdin })
for await (const line of rl) {
  const cmd = JSON.parse(line)
  if (cmd.cmd === 'send') out(await sendPhase(cmd.rate, cmd.count))
  else if (cmd.cmd === 'recv') out(await recvPhase(cmd.count, cmd.within))
  else break
}
for (const s of socks) if (s) s.end(undefined)
process.exit(0)
