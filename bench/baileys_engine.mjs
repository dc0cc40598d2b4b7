// Baileys side of bench/engine.py: N Baileys 7.0.0-rc14 sockets in one Node process against the
// same sandbox, measured the same way as the Python engines.
//
// Usage: node --expose-gc bench/baileys_engine.mjs link  <config.json | inline json>
//        node --expose-gc bench/baileys_engine.mjs login <config.json | inline json>
//   config = {ws_url, admin_url, root_public_key, phones: [..N..], concurrency, idle_seconds, auth_file}
// "link": link all N (QR scanned through the sandbox admin API, `concurrency` at a time, loop lag
//   sampled), save their creds to auth_file; prints {n, linked, link_seconds, loop_lag_p99_ms, errors}.
// "link" then "login" run in separate processes so the RSS figure is not skewed by the linking phase.
// "login": load auth_file, log all in at once (timed, RSS delta after GC), stay idle for
//   `idle_seconds` with Baileys' default 30 s keepalive and measure process CPU; prints
//   {logged_in, login_seconds, rss_per_conn_bytes, keepalive_cpu_percent, closes_during_idle, errors}.
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const B = await import(pathToFileURL(join(here, '..', 'tests', 'interop', 'node_modules', 'baileys', 'lib', 'index.js')).href)
const pino = (await import(pathToFileURL(join(here, '..', 'tests', 'interop', 'node_modules', 'pino', 'pino.js')).href)).default

const mode = process.argv[2]
// the config is inline JSON or the path of a JSON file (N = 5000 phones is too long for argv)
const cfgArg = process.argv[3]
const cfg = JSON.parse(cfgArg.trimStart().startsWith('{') ? cfgArg : readFileSync(cfgArg, 'utf8'))
B.WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(cfg.root_public_key, 'hex')
const logger = pino({ level: 'silent' })
const errors = []

function memoryAuth (saved) {
  const creds = saved ? saved.creds : B.initAuthCreds()
  const keys = new Map(saved ? saved.keys : [])
  return {
    creds,
    dump: () => ({ creds, keys: [...keys.entries()] }),
    keys: {
      get: async (type, ids) => {
        const out = {}
        for (const id of ids) {
          const v = keys.get(`${type}-${id}`)
          if (v !== undefined) out[id] = v
        }
        return out
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

// Resolves with the open socket; reconnects on 515 like the Baileys example does.
function connect (auth, phone) {
  return new Promise((resolve, reject) => {
    let scanned = false
    const start = () => {
      const sock = B.makeWASocket({
        waWebSocketUrl: cfg.ws_url,
        auth,
        logger,
        printQRInTerminal: false,
        markOnlineOnConnect: false,
        fireInitQueries: false,
        syncFullHistory: false,
        browser: ['Mac OS', 'Chrome', '14.4.1']
      })
      sock.ev.on('creds.update', (u) => Object.assign(auth.creds, u))
      sock.ev.on('connection.update', async (u) => {
        if (u.qr && !scanned && phone) {
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

function lagMonitor () {
  const samples = []
  let expected = performance.now() + 10
  let timer
  const tick = () => {
    const now = performance.now()
    samples.push(Math.max(0, now - expected))
    expected = now + 10
    timer = setTimeout(tick, 10)
  }
  timer = setTimeout(tick, 10)
  return {
    stop () {
      clearTimeout(timer)
      samples.sort((a, b) => a - b)
      return samples.length ? samples[Math.min(samples.length - 1, Math.floor(samples.length * 0.99))] : 0
    }
  }
}

async function pool (items, limit, fn) {
  const results = new Array(items.length)
  let next = 0
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      try { results[i] = await fn(items[i], i) } catch (e) { errors.push(String(e)); results[i] = null }
    }
  })
  await Promise.all(workers)
  return results
}

const gc = globalThis.gc ?? (() => {})
const settle = () => new Promise((resolve) => setTimeout(resolve, 500))

if (mode === 'link') {
  const auths = cfg.phones.map(() => memoryAuth())
  const lag = lagMonitor()
  const t0 = performance.now()
  const socks = await pool(cfg.phones, cfg.concurrency, (phone, i) => connect(auths[i], phone))
  const linkSeconds = (performance.now() - t0) / 1000
  const lagP99 = lag.stop()
  for (const s of socks) if (s) s.end(undefined)
  const linked = auths.filter((a) => a.creds.me)
  writeFileSync(cfg.auth_file, JSON.stringify(linked.map((a) => a.dump()), B.BufferJSON.replacer))
  console.log(JSON.stringify({
    n: cfg.phones.length, linked: linked.length, link_seconds: linkSeconds, loop_lag_p99_ms: lagP99, errors: errors.slice(0, 5)
  }))
} else {
  const saved = JSON.parse(readFileSync(cfg.auth_file, 'utf8'), B.BufferJSON.reviver)
  const auths = saved.map((x) => memoryAuth(x))
  await settle()
  gc()
  const rssBefore = process.memoryUsage().rss
  const t0 = performance.now()
  const loginCpu0 = process.cpuUsage()
  const socks = await Promise.all(auths.map((a) => connect(a, null).catch((e) => { errors.push(String(e)); return null })))
  const loginSeconds = (performance.now() - t0) / 1000
  const loginCpu = process.cpuUsage(loginCpu0)
  const open = socks.filter(Boolean)
  await settle()
  gc()
  const rssAfter = process.memoryUsage().rss
  let closes = 0
  for (const s of open) s.ev.on('connection.update', (u) => { if (u.connection === 'close') closes++ })
  const cpu0 = process.cpuUsage()
  const w0 = performance.now()
  await new Promise((resolve) => setTimeout(resolve, cfg.idle_seconds * 1000))
  const cpu = process.cpuUsage(cpu0)
  const wall = (performance.now() - w0) / 1000
  for (const s of open) s.end(undefined)
  console.log(JSON.stringify({
    logged_in: open.length,
    login_seconds: loginSeconds,
    login_cpu_ms_per_conn: open.length ? ((loginCpu.user + loginCpu.system) / 1000) / open.length : null,
    rss_per_conn_bytes: open.length ? (rssAfter - rssBefore) / open.length : null,
    keepalive_cpu_percent: ((cpu.user + cpu.system) / 1e6) / wall * 100,
    closes_during_idle: closes,
    errors: errors.slice(0, 5)
  }))
}
process.exit(0)
