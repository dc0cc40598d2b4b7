"""Fuzz the wire layer's input side: WABinary decode, frame readers and the Noise readers.

    .venv/bin/python bench/fuzz_wire.py [--n 1000000] [--workers 2] [--seed 1] [--guard 2.0]

Every input goes to one target and must either be accepted or refused with a ``WireError``
subclass. Anything else is a *crash* (IndexError, RecursionError, MemoryError, …); an input that
runs longer than ``--guard`` seconds (SIGALRM per input) is a *hang*. The run prints per-target
counts and the first offending inputs, and exits 1 if there was any crash or hang.

Inputs: mutations of valid encodings (byte flips, "interesting" tag/length bytes, inserts, deletes,
duplicated ranges, splices, truncations), zlib-compressed bodies (valid, mutated, bombs), random
bytes, framed streams (valid and mutated) with random chunking for FrameReader/ServerFrameReader,
and — when ``evolink.wire.noise`` is importable — mutated handshake messages for
``NoiseResponder.read_client_hello`` / ``read_client_finish``, ``NoiseInitiator.read_server_hello``
and mutated ciphertexts for ``Transport.decrypt``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wire import build_corpus

from evolink.wire.binary import decode, encode
from evolink.wire.errors import WireError
from evolink.wire.frames import FrameReader, ServerFrameReader, client_intro, encode_frame

try:
    from evolink.wire.crypto import KeyPair
    from evolink.wire.noise import NoiseInitiator, NoiseResponder, Transport

    HAVE_NOISE = True
except ImportError:  # the Noise module is optional for this tool
    HAVE_NOISE = False

INTERESTING = [0, 1, 2, 3, 0x7F, 0x80, 0x81, 0xFF, *range(236, 256)]
TASK_SIZE = 20_000


class _Hang(BaseException):
    """Raised from SIGALRM when one input exceeds the time guard (not an Exception on purpose)."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _Hang


@dataclass
class Stats:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    findings: list[tuple[str, str, str]] = field(default_factory=list)
    slowest: float = 0.0
    slowest_target: str = ""

    def add(self, target: str, outcome: str) -> None:
        per = self.counts.setdefault(target, {"accepted": 0, "rejected": 0, "crash": 0, "hang": 0})
        per[outcome] += 1

    def merge(self, other: Stats) -> None:
        for target, per in other.counts.items():
            mine = self.counts.setdefault(target, {"accepted": 0, "rejected": 0, "crash": 0, "hang": 0})
            for k, v in per.items():
                mine[k] += v
        self.findings.extend(other.findings[: max(0, 20 - len(self.findings))])
        if other.slowest > self.slowest:
            self.slowest, self.slowest_target = other.slowest, other.slowest_target


# --- seeds and mutations ----------------------------------------------------------------------------


def _hand_made_seeds() -> list[bytes]:
    """Encodings that exercise tags our encoder never emits (FB/INTEROP JIDs, LIST_16, BINARY_32 …)."""
    h = bytes.fromhex
    return [
        h("00 f8 03 19 08 f6 ff 81 5f 00 02 fc 04 6d 73 67 72"),
        h("00 f8 03 19 08 f5 ff 81 5f 00 03 00 09 fc 07 69 6e 74 65 72 6f 70"),
        h("00 f8 04 19 08 f5 ff 81 5f 00 03 00 09 f8 01 f8 01 56"),
        h("00 f8 02 19 fe 00 00 00 03 61 62 63"),
        h("00 f9 00 03 19 08 ec 01"),
        h("00 f8 02 19 f9 00 01 f8 01 56"),
        h("00 f8 03 19 08 fb 82 ab cf"),
        h("00 f8 03 19 08 fa fa 00 03 03"),
        h("00 f8 02 19 00"),
    ]


def _mutate(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4, 8))):
        op = rng.randrange(8)
        n = len(buf)
        if op == 0 and n:
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 2:
            at = rng.randrange(n + 1)
            buf[at:at] = rng.randbytes(rng.choice((1, 1, 2, 4, 16)))
        elif op == 3 and n > 1:
            at = rng.randrange(n)
            del buf[at : at + rng.choice((1, 1, 2, 8, 64))]
        elif op == 4 and n > 1:
            at = rng.randrange(n)
            chunk = buf[at : at + rng.choice((1, 3, 8, 32, 128))]
            buf[at:at] = chunk * rng.choice((1, 2, 16))
        elif op == 5 and n:
            other = rng.choice(seeds)
            at = rng.randrange(n)
            buf[at:] = other[rng.randrange(len(other)) :]
        elif op == 6 and n:
            del buf[rng.randrange(n) :]
        elif op == 7 and n > 4:
            # overwrite a run with 0xff (maximal lengths / sizes)
            at = rng.randrange(n)
            buf[at : at + 4] = b"\xff" * len(buf[at : at + 4])
    return bytes(buf)


def _chunked(data: bytes, rng: random.Random) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        step = rng.choice((1, 2, 3, 7, 64, 512, len(data)))
        out.append(data[pos : pos + step])
        pos += step
    return out


# --- targets --------------------------------------------------------------------------------------------


class Fuzzer:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        corpus = build_corpus(400, seed)
        small = [encode(n) for n in corpus if len(encode(n)) < 3000]
        self.seeds = small + _hand_made_seeds()
        self.compressed = [b"\x02" + zlib.compress(s[1:]) for s in self.seeds[:50]]
        self.bomb = b"\x02" + zlib.compress(b"\x00" * (40 << 20), 9)  # inflates past max_size
        self.streams = [b"".join(encode_frame(s) for s in self.seeds[i : i + 4]) for i in range(0, 80, 4)]
        self.generators: list[tuple[str, Callable[[], Callable[[], object]], int]] = [
            ("decode/mutated", self._decode_mutated, 50),
            ("decode/random", self._decode_random, 12),
            ("decode/truncated", self._decode_truncated, 8),
            ("decode/zlib", self._decode_zlib, 4),
            ("frames/reader", self._frames, 8),
            ("frames/server", self._server_frames, 8),
        ]
        if HAVE_NOISE:
            self.static = KeyPair.generate()
            self.eph = KeyPair.generate()
            self.client_static = KeyPair.generate()
            self.client_eph = KeyPair.generate()
            init = NoiseInitiator(self.client_static, ephemeral=self.client_eph)
            resp = NoiseResponder(self.static, ephemeral=self.eph)
            self.hello = init.client_hello()
            resp.read_client_hello(self.hello)
            self.server_hello = resp.server_hello(b"cert-payload" * 10)
            init.read_server_hello(self.server_hello)
            self.finish = init.client_finish(b"client-payload" * 20)
            self.keys = (os.urandom(32), os.urandom(32))
            sender = Transport(self.keys[0], self.keys[1])
            self.ciphertexts = [sender.encrypt(s) for s in self.seeds[:20]]
            self.generators += [
                ("noise/read_client_hello", self._noise_hello, 3),
                ("noise/read_server_hello", self._noise_server_hello, 1),
                ("noise/read_client_finish", self._noise_finish, 1),
                ("noise/transport_decrypt", self._noise_decrypt, 5),
            ]
        self.names = [g[0] for g in self.generators]
        self.weights = [g[2] for g in self.generators]
        self.makers = [g[1] for g in self.generators]

    def next(self) -> tuple[str, Callable[[], object], bytes]:
        i = self.rng.choices(range(len(self.makers)), self.weights)[0]
        self._last = b""
        call = self.makers[i]()
        return self.names[i], call, self._last

    def _decode_call(self, data: bytes, **kw: Any) -> Callable[[], object]:
        self._last = data
        return lambda: decode(data, **kw)

    def _decode_mutated(self) -> Callable[[], object]:
        data = _mutate(self.rng.choice(self.seeds), self.rng, self.seeds)
        kw = {"allow_trailing": True} if self.rng.random() < 0.2 else {}
        return self._decode_call(data, **kw)

    def _decode_random(self) -> Callable[[], object]:
        rng = self.rng
        if rng.random() < 0.5:
            body = rng.randbytes(rng.randrange(0, 64))
        else:  # tag-heavy random input reaches deeper into the parser
            body = bytes(rng.choice(INTERESTING) if rng.random() < 0.6 else rng.randrange(256)
                         for _ in range(rng.randrange(1, 48)))  # fmt: skip
        return self._decode_call(rng.choice((b"\x00", b"\x02", b"")) + body)

    def _decode_truncated(self) -> Callable[[], object]:
        seed = self.rng.choice(self.seeds)
        return self._decode_call(seed[: self.rng.randrange(len(seed))])

    def _decode_zlib(self) -> Callable[[], object]:
        rng = self.rng
        if rng.random() < 0.002:
            return self._decode_call(self.bomb)
        data = rng.choice(self.compressed)
        if rng.random() < 0.7:
            data = _mutate(data, rng, self.compressed)
        return self._decode_call(data, max_size=rng.choice((1 << 10, 1 << 16, 1 << 24)))

    def _frames(self) -> Callable[[], object]:
        rng = self.rng
        stream = rng.choice(self.streams)
        if rng.random() < 0.8:
            stream = _mutate(stream, rng, self.streams)
        pieces = _chunked(stream, rng)
        max_size = rng.choice((16, 1 << 12, (1 << 24) - 1))
        self._last = stream

        def run() -> object:
            reader = FrameReader(max_size=max_size)
            return [reader.feed(p) for p in pieces]

        return run

    def _server_frames(self) -> Callable[[], object]:
        rng = self.rng
        routing = rng.choice((None, rng.randbytes(rng.randrange(1, 40))))
        stream = client_intro(routing) + rng.choice(self.streams)
        if rng.random() < 0.8:
            stream = _mutate(stream, rng, self.streams)
        pieces = _chunked(stream, rng)
        self._last = stream

        def run() -> object:
            reader = ServerFrameReader(max_size=rng.choice((1 << 12, (1 << 24) - 1)))
            return [reader.feed(p) for p in pieces]

        return run

    def _noise_input(self, valid: bytes) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:
            return rng.randbytes(rng.randrange(0, 120))
        if roll < 0.15:
            return valid
        return _mutate(valid, rng, [self.hello, self.server_hello, self.finish])

    def _noise_hello(self) -> Callable[[], object]:
        data = self._noise_input(self.hello)
        self._last = data
        return lambda: NoiseResponder(self.static, ephemeral=self.eph).read_client_hello(data)

    def _noise_server_hello(self) -> Callable[[], object]:
        data = self._noise_input(self.server_hello)
        self._last = data

        def run() -> object:
            init = NoiseInitiator(self.client_static, ephemeral=self.client_eph)
            init.client_hello()
            return init.read_server_hello(data)

        return run

    def _noise_finish(self) -> Callable[[], object]:
        data = self._noise_input(self.finish)
        self._last = data

        def run() -> object:
            resp = NoiseResponder(self.static, ephemeral=self.eph)
            resp.read_client_hello(self.hello)
            resp.server_hello(b"cert-payload" * 10)
            return resp.read_client_finish(data)

        return run

    def _noise_decrypt(self) -> Callable[[], object]:
        rng = self.rng
        index = rng.randrange(len(self.ciphertexts))
        data = self.ciphertexts[index]
        if rng.random() < 0.9:
            data = _mutate(data, rng, self.ciphertexts)
        self._last = data

        def run() -> object:
            receiver = Transport(self.keys[1], self.keys[0])
            for _ in range(index):  # bring the read counter to the frame's nonce
                try:
                    receiver.decrypt(b"")
                except WireError:
                    pass
            return receiver.decrypt(data)

        return run


def run_task(args: tuple[int, int, float]) -> Stats:
    seed, count, guard = args
    fuzzer = Fuzzer(seed)
    stats = Stats()
    signal.signal(signal.SIGALRM, _on_alarm)
    for _ in range(count):
        target, call, data = fuzzer.next()
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, guard)
        try:
            call()
            outcome = "accepted"
        except _Hang:
            outcome = "hang"
        except WireError:
            outcome = "rejected"
        except Exception as exc:  # a crash: anything that is not the typed error family
            outcome = "crash"
            stats.findings.append((target, f"{type(exc).__name__}: {exc}"[:200], data[:300].hex()))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - t0
        if outcome == "hang":
            stats.findings.append((target, f"hang (> {guard}s)", data[:300].hex()))
        if elapsed > stats.slowest:
            stats.slowest, stats.slowest_target = elapsed, target
        stats.add(target, outcome)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="number of inputs (default 10^6)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--guard", type=float, default=2.0, help="per-input time limit in seconds")
    args = parser.parse_args(argv)

    tasks = []
    left, i = args.n, 0
    while left > 0:
        size = min(TASK_SIZE, left)
        tasks.append((args.seed * 100_003 + i, size, args.guard))
        left -= size
        i += 1
    print(
        f"fuzzing {args.n:,} inputs on {args.workers} worker(s); noise targets: {'yes' if HAVE_NOISE else 'no'}"
    )
    total = Stats()
    done = 0
    start = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.workers) as pool:
        for stats in pool.imap_unordered(run_task, tasks):
            total.merge(stats)
            done += sum(sum(per.values()) for per in stats.counts.values())
            if done % 200_000 < TASK_SIZE or done == args.n:
                print(f"  {done:>9,} inputs  {time.perf_counter() - start:7.1f}s", flush=True)
    elapsed = time.perf_counter() - start

    print(f"\n{'target':28} {'inputs':>10} {'accepted':>10} {'rejected':>10} {'crash':>6} {'hang':>5}")
    sums = {"accepted": 0, "rejected": 0, "crash": 0, "hang": 0}
    for target in sorted(total.counts):
        per = total.counts[target]
        for k in sums:
            sums[k] += per[k]
        print(f"{target:28} {sum(per.values()):10,} {per['accepted']:10,} {per['rejected']:10,} "
              f"{per['crash']:6} {per['hang']:5}")  # fmt: skip
    n_total = sum(sums.values())
    print(
        f"{'total':28} {n_total:10,} {sums['accepted']:10,} {sums['rejected']:10,} {sums['crash']:6} {sums['hang']:5}"
    )
    print(f"\nelapsed {elapsed:.1f}s ({n_total / elapsed:,.0f} inputs/s); slowest input "
          f"{total.slowest * 1000:.1f} ms ({total.slowest_target})")  # fmt: skip
    print(f"crashes: {sums['crash']}  hangs: {sums['hang']}")
    for target, what, data in total.findings[:20]:
        print(f"  [{target}] {what}\n    input: {data}")
    return 1 if sums["crash"] or sums["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
