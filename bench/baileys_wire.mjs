// Node side of bench/wire.py and of the differential tests in tests/wire/test_binary.py.
//
// Usage: node bench/baileys_wire.mjs <corpus.json> check
//        node bench/baileys_wire.mjs <corpus.json> bench [seconds]
//
// corpus.json = {"nodes": [N, ...], "encoded": [base64, ...]} where a node N is
// {"tag": str, "attrs": {str: str}, "content": null | str | {"b64": str} | [N, ...]}.
// "check" prints {"encoded": [base64 of Baileys' encodeBinaryNode(N)], "decoded": [N or {"error"}]}
// (decoded from the given "encoded" bytes). "bench" prints Baileys' encode/decode throughput.
// It loads Baileys' WABinary modules straight from tests/interop/node_modules (pinned 7.0.0-rc14).
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const lib = join(here, '..', 'tests', 'interop', 'node_modules', 'baileys', 'lib', 'WABinary')
const { encodeBinaryNode } = await import(pathToFileURL(join(lib, 'encode.js')).href)
const { decodeBinaryNode, decodeDecompressedBinaryNode } = await import(pathToFileURL(join(lib, 'decode.js')).href)
const constants = await import(pathToFileURL(join(lib, 'constants.js')).href)

const [corpusPath, mode = 'check', secondsArg = '2'] = process.argv.slice(2)
const corpus = JSON.parse(readFileSync(corpusPath, 'utf8'))

const fromJson = (n) => ({
  tag: n.tag,
  attrs: n.attrs ?? {},
  content: n.content === null || n.content === undefined
    ? undefined
    : typeof n.content === 'string'
      ? n.content
      : Array.isArray(n.content)
        ? n.content.map(fromJson)
        : Buffer.from(n.content.b64, 'base64'),
})

const toJson = (n) => ({
  tag: n.tag,
  attrs: n.attrs,
  content: n.content === undefined
    ? null
    : typeof n.content === 'string'
      ? n.content
      : Array.isArray(n.content)
        ? n.content.map(toJson)
        : { b64: Buffer.from(n.content).toString('base64') },
})

const nodes = corpus.nodes.map(fromJson)
const encoded = (corpus.encoded ?? []).map((b) => Buffer.from(b, 'base64'))

if (mode === 'check') {
  const out = { encoded: [], decoded: [] }
  for (const n of nodes) {
    try {
      out.encoded.push(encodeBinaryNode(n).toString('base64'))
    } catch (err) {
      out.encoded.push({ error: String(err.message ?? err) })
    }
  }
  for (const b of encoded) {
    try {
      out.decoded.push(toJson(await decodeBinaryNode(b)))
    } catch (err) {
      out.decoded.push({ error: String(err.message ?? err) })
    }
  }
  process.stdout.write(JSON.stringify(out))
} else if (mode === 'bench') {
  const seconds = Number(secondsArg)
  const totalBytes = encoded.reduce((a, b) => a + b.length, 0)
  // Same statistic as bench/wire.py: whole passes over the corpus for `seconds`, best and mean pass.
  const timeLoop = async (fn) => {
    for (let i = 0; i < 3; i++) await fn() // warm up the JIT
    const times = []
    const deadline = performance.now() + seconds * 1000
    while (performance.now() < deadline || times.length < 3) {
      const t0 = performance.now()
      await fn()
      times.push((performance.now() - t0) / 1000)
    }
    return { best: Math.min(...times), mean: times.reduce((a, b) => a + b, 0) / times.length }
  }
  const encodeAll = () => { for (const n of nodes) encodeBinaryNode(n) }
  const decodeSync = () => { for (const b of encoded) decodeDecompressedBinaryNode(b.subarray(1), constants) }
  const decodeAsync = async () => { for (const b of encoded) await decodeBinaryNode(b) }
  const report = ({ best, mean }) => ({
    nodes_per_s: nodes.length / best,
    mb_per_s: totalBytes / best / 1e6,
    us_per_node: (best * 1e6) / nodes.length,
    mean_us_per_node: (mean * 1e6) / nodes.length,
  })
  const result = {
    node_version: process.version,
    encode: report(await timeLoop(encodeAll)),
    decode: report(await timeLoop(decodeSync)),
    decode_async: report(await timeLoop(decodeAsync)),
  }
  process.stdout.write(JSON.stringify(result))
} else {
  console.error(`unknown mode ${mode}`)
  process.exit(2)
}
