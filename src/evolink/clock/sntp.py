"""Asyncio SNTP client (RFC 4330 / RFC 5905 on-wire protocol).

Why our own: ntplib is blocking, single-server and skips the origin check. Per server we send a short
burst, keep the lowest-delay valid reply (RFC 5905 clock filter idea), and enforce the client rules:
no server polled more often than every 15 s, exponential backoff on failure, KoD honoured
(RATE -> poll less, DENY/RSTR -> stop using the server).

Timestamps: T1 is read from the injected wall clock once per packet; T4 = T1 + monotonic elapsed, so
a wall-clock step during the exchange cannot corrupt the sample.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from evolink.clock.config import MIN_POLL_SECONDS, NtpServer

log = logging.getLogger(__name__)

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
PACKET_LEN = 48
MAX_STRATUM = 15
MAX_ROOT_DISTANCE = 16.0  # RFC 5905 MAXDISP: a server claiming worse is not a time source
MODE_CLIENT = 3
MODE_SERVER = 4
LEAP_ALARM = 3
_FORMAT = "!BBbbII4sQQQQ"
_ERA = 1 << 32


class ServerStatus(StrEnum):
    OK = "ok"
    SILENT = "silent"  # no reply within the timeout
    UNREACHABLE = "unreachable"  # ICMP refused / network error
    DNS = "dns_failed"
    KOD_RATE = "kod_rate"
    DENIED = "denied"  # KoD DENY / RSTR: never asked again
    UNSYNCED = "unsynced"  # LI=3 or stratum 16: the server does not know the time
    BOGUS = "bogus"  # replies failing the sanity checks (origin, mode, zero transmit...)
    BACKOFF = "backoff"  # skipped: last poll failed, waiting before retrying


class SampleError(Exception):
    """A reply failed an RFC 4330 §5 check; ``status`` says how the server should be treated."""

    def __init__(self, status: ServerStatus, message: str, kod: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kod = kod


@dataclass(frozen=True, slots=True)
class NtpPacket:
    leap: int
    version: int
    mode: int
    stratum: int
    poll: int
    precision: int
    root_delay: float
    root_dispersion: float
    ref_id: bytes
    reference_ts: int
    origin_ts: int
    receive_ts: int
    transmit_ts: int


def _short_to_float(v: int) -> float:
    return v / 65536.0


def _float_to_short(v: float) -> int:
    return max(0, min(int(v * 65536.0), 0xFFFFFFFF))


def unix_to_ntp(t: float) -> int:
    """Unix seconds -> 64-bit NTP timestamp (era-wrapped)."""
    return round((t + NTP_EPOCH_OFFSET) * _ERA) & 0xFFFFFFFFFFFFFFFF


def ntp_to_unix(ts: int, pivot: float) -> float:
    """64-bit NTP timestamp -> unix seconds, choosing the era nearest ``pivot`` (handles 2036)."""
    seconds = ts / _ERA
    pivot_ntp = pivot + NTP_EPOCH_OFFSET
    era = round((pivot_ntp - seconds) / _ERA)
    return seconds + era * _ERA - NTP_EPOCH_OFFSET


def encode_packet(p: NtpPacket) -> bytes:
    first = ((p.leap & 3) << 6) | ((p.version & 7) << 3) | (p.mode & 7)
    return struct.pack(_FORMAT, first, p.stratum & 0xFF, p.poll, p.precision,
                       _float_to_short(p.root_delay), _float_to_short(p.root_dispersion),
                       p.ref_id[:4].ljust(4, b"\0"), p.reference_ts, p.origin_ts, p.receive_ts, p.transmit_ts)


def decode_packet(data: bytes) -> NtpPacket:
    if len(data) < PACKET_LEN:
        raise SampleError(ServerStatus.BOGUS, f"short packet ({len(data)} bytes)")
    (first, stratum, poll, precision, rdelay, rdisp, ref_id,
     ref_ts, orig_ts, recv_ts, tx_ts) = struct.unpack(_FORMAT, data[:PACKET_LEN])
    return NtpPacket(first >> 6, (first >> 3) & 7, first & 7, stratum, poll, precision,
                     _short_to_float(rdelay), _short_to_float(rdisp), ref_id, ref_ts, orig_ts, recv_ts, tx_ts)


def build_request(transmit_ts: int) -> bytes:
    """Client request; ``transmit_ts`` is a random nonce the server must echo as origin."""
    return encode_packet(NtpPacket(0, 4, MODE_CLIENT, 0, 0, 0, 0.0, 0.0, b"\0\0\0\0", 0, 0, 0, transmit_ts))


def validate_reply(p: NtpPacket, origin: int) -> None:
    """RFC 4330 §5 / RFC 5905 §7.4 checks; raises ``SampleError``."""
    if p.origin_ts != origin:
        raise SampleError(ServerStatus.BOGUS, "origin timestamp does not match our request")
    if p.mode != MODE_SERVER:
        raise SampleError(ServerStatus.BOGUS, f"mode {p.mode}, expected {MODE_SERVER}")
    if p.version not in (3, 4):
        raise SampleError(ServerStatus.BOGUS, f"NTP version {p.version}")
    if p.stratum == 0:
        code = p.ref_id.rstrip(b"\0").decode("ascii", "replace")
        if code == "RATE":
            raise SampleError(ServerStatus.KOD_RATE, "kiss-o'-death RATE: polling too often", code)
        if code in ("DENY", "RSTR"):
            raise SampleError(ServerStatus.DENIED, f"kiss-o'-death {code}: access denied", code)
        raise SampleError(ServerStatus.UNSYNCED, f"kiss-o'-death {code or '(empty)'}", code)
    if p.leap == LEAP_ALARM:
        raise SampleError(ServerStatus.UNSYNCED, "leap indicator 3: server clock not synchronised")
    if p.stratum > MAX_STRATUM:
        raise SampleError(ServerStatus.UNSYNCED, f"stratum {p.stratum}: server not synchronised")
    if p.transmit_ts == 0:
        raise SampleError(ServerStatus.BOGUS, "zero transmit timestamp")
    if p.root_delay / 2 + p.root_dispersion >= MAX_ROOT_DISTANCE:
        raise SampleError(ServerStatus.BOGUS, "root distance >= 16 s")


@dataclass(frozen=True, slots=True)
class NtpSample:
    """One validated exchange. ``offset`` = server - host (seconds), ``delay`` = round trip."""

    offset: float
    delay: float
    root_delay: float
    root_dispersion: float
    stratum: int
    leap: int
    ref_id: str
    precision: float
    t1: float  # host wall time when sent

    def shifted(self, step: float) -> NtpSample:
        """This exchange as measured against a host clock stepped by ``step`` seconds since."""
        return replace(self, offset=self.offset - step, t1=self.t1 + step)

    @property
    def distance(self) -> float:
        """Error bound half-width (RFC 5905 root distance, without dispersion growth)."""
        return self.delay / 2 + self.root_delay / 2 + self.root_dispersion + self.precision


def make_sample(p: NtpPacket, t1: float, t4: float) -> NtpSample:
    t2 = ntp_to_unix(p.receive_ts, t1)
    t3 = ntp_to_unix(p.transmit_ts, t1)
    precision = 2.0 ** max(-32, min(p.precision, 0))
    delay = max((t4 - t1) - (t3 - t2), precision)  # negative delay clamped (RFC 5905 §8)
    offset = ((t2 - t1) + (t3 - t4)) / 2
    ref = (p.ref_id.rstrip(b"\0").decode("ascii", "replace") if p.stratum <= 1
           else socket.inet_ntoa(p.ref_id))
    return NtpSample(offset, delay, p.root_delay, p.root_dispersion, p.stratum, p.leap, ref, precision, t1)


@dataclass(frozen=True, slots=True)
class ServerResult:
    server: NtpServer
    status: ServerStatus
    sample: NtpSample | None = None
    sent: int = 0
    replies: int = 0
    address: str | None = None
    error: str | None = None
    cached: bool = False  # sample from an earlier poll (min poll interval not elapsed)

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"server": str(self.server), "status": str(self.status), "sent": self.sent,
                                "replies": self.replies, "cached": self.cached}
        if self.address:
            d["address"] = self.address
        if self.error:
            d["error"] = self.error
        if self.sample is not None:
            d.update(offset=self.sample.offset, delay=self.sample.delay, distance=self.sample.distance,
                     stratum=self.sample.stratum, refId=self.sample.ref_id)
        return d


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, float] | Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.queue.put_nowait((data, time.monotonic()))

    def error_received(self, exc: Exception) -> None:
        self.queue.put_nowait(exc)


async def query_server(server: NtpServer, *, packets: int = 4, spacing: float = 2.0,
                       reply_timeout: float = 2.0, wall: Callable[[], float] = time.time) -> ServerResult:
    """Send up to ``packets`` requests to one server; return its lowest-delay valid sample."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(server.host, server.port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP),
            reply_timeout)
    except (OSError, TimeoutError) as exc:
        return ServerResult(server, ServerStatus.DNS, error=f"cannot resolve: {exc or 'timeout'}")
    family, _, _, _, sockaddr = infos[0]
    ip, port = str(sockaddr[0]), int(sockaddr[1])
    address = f"{ip}:{port}"
    try:
        transport, proto = await loop.create_datagram_endpoint(
            _Receiver, remote_addr=(ip, port), family=family)
    except OSError as exc:
        return ServerResult(server, ServerStatus.UNREACHABLE, address=address, error=str(exc))
    samples: list[NtpSample] = []
    sent = replies = timeouts = 0
    failure: SampleError | None = None
    last_tx: int | None = None
    try:
        for i in range(packets):
            if i:
                await asyncio.sleep(spacing)  # pacing between packets, not synchronisation
            while not proto.queue.empty():  # late replies to earlier packets
                proto.queue.get_nowait()
            origin = secrets.randbits(64) or 1
            t1 = wall()
            m1 = time.monotonic()
            transport.sendto(build_request(origin))
            sent += 1
            deadline = m1 + reply_timeout
            outcome = await _await_reply(proto, origin, deadline, last_tx)
            if outcome is None:
                timeouts += 1
                if timeouts >= 2 and not replies:
                    break  # twice silent: do not burn the whole burst
                continue
            if isinstance(outcome, OSError):
                return ServerResult(server, ServerStatus.UNREACHABLE, sent=sent, address=address,
                                    error=str(outcome) or type(outcome).__name__)
            if isinstance(outcome, SampleError):
                replies += 1
                failure = outcome
                if outcome.status in (ServerStatus.KOD_RATE, ServerStatus.DENIED, ServerStatus.UNSYNCED):
                    break  # KoD: stop now (RFC 5905 §7.4); unsynced servers stay unsynced for the burst
                continue
            packet, m4 = outcome
            replies += 1
            last_tx = packet.transmit_ts
            samples.append(make_sample(packet, t1, t1 + (m4 - m1)))
    finally:
        transport.close()
    if samples:
        best = min(samples, key=lambda s: s.delay)
        return ServerResult(server, ServerStatus.OK, best, sent, replies, address)
    if failure is not None:
        return ServerResult(server, failure.status, None, sent, replies, address, str(failure))
    return ServerResult(server, ServerStatus.SILENT, None, sent, replies, address,
                        f"no reply to {sent} request(s) within {reply_timeout:g} s")


async def _await_reply(proto: _Receiver, origin: int, deadline: float,
                       last_tx: int | None) -> tuple[NtpPacket, float] | SampleError | OSError | None:
    """Wait for the reply to ``origin``; ignore bogus/duplicate datagrams (could be spoofed or late)."""
    bogus: SampleError | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bogus
        try:
            item = await asyncio.wait_for(proto.queue.get(), remaining)
        except TimeoutError:
            return bogus
        if isinstance(item, Exception):
            return item if isinstance(item, OSError) else OSError(str(item))
        data, m4 = item
        try:
            packet = decode_packet(data)
            validate_reply(packet, origin)
        except SampleError as exc:
            if exc.status is ServerStatus.BOGUS:
                bogus = exc  # keep waiting for the genuine reply
                continue
            return exc
        if last_tx is not None and packet.transmit_ts == last_tx:
            bogus = SampleError(ServerStatus.BOGUS, "duplicate reply")
            continue
        return packet, m4


@dataclass(slots=True)
class _PollState:
    next_allowed: float = 0.0
    failures: int = 0
    disabled: bool = False
    last: ServerResult | None = None
    stored_at: float = 0.0  # monotonic time ``last`` was stored


class SntpClient:
    """Polls a fixed set of servers concurrently, honouring per-server poll intervals."""

    def __init__(self, servers: Sequence[NtpServer], *, packets: int = 4, spacing: float = 2.0,
                 timeout: float = 2.0, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, min_poll: float = MIN_POLL_SECONDS,
                 max_backoff: float = 1024.0) -> None:
        self.servers = tuple(servers)
        self.packets = packets
        self.spacing = spacing
        self.timeout = timeout
        self.wall = wall
        self.monotonic = monotonic
        self.min_poll = max(min_poll, MIN_POLL_SECONDS)
        self.max_backoff = max_backoff
        self._state = {s: _PollState() for s in self.servers}
        self._epoch = 0  # bumped by shift(): a poll in flight across a step is not cached

    def shift(self, step: float, window: float) -> None:
        """The host clock was stepped by ``step`` seconds, at most ``window`` seconds ago.

        Cached samples (served until a server may be polled again) still measure true time, so the
        ones stored before the window move with the host clock instead of being thrown away: a
        re-measure right after a step polls no server sooner than RFC 4330 allows. A sample stored
        inside the window may be on either side of the step: it is dropped, so that server is polled
        afresh, as is every server whose poll was in flight during the step."""
        self._epoch += 1
        cutoff = self.monotonic() - window
        for st in self._state.values():
            if st.last is None or st.last.sample is None:
                continue
            if st.stored_at <= cutoff:
                st.last = replace(st.last, sample=st.last.sample.shifted(step))
            else:
                st.last = None

    async def poll_all(self) -> list[ServerResult]:
        return list(await asyncio.gather(*(self._poll(s) for s in self.servers)))

    async def _poll(self, server: NtpServer) -> ServerResult:
        st = self._state[server]
        now = self.monotonic()
        if st.disabled:
            last = st.last
            return ServerResult(server, ServerStatus.DENIED, error=last.error if last else "denied")
        if now < st.next_allowed and st.last is not None:
            if st.last.status is ServerStatus.OK:
                return replace(st.last, cached=True)
            return replace(st.last, status=ServerStatus.BACKOFF, sent=0, replies=0, cached=True,
                           error=f"last poll: {st.last.status}; retry in {st.next_allowed - now:.0f} s")
        epoch = self._epoch
        result = await query_server(server, packets=self.packets, spacing=self.spacing,
                                    reply_timeout=self.timeout, wall=self.wall)
        now = self.monotonic()
        if result.status is not ServerStatus.OK or epoch == self._epoch:
            st.last, st.stored_at = result, now
        if result.status is ServerStatus.OK:
            st.failures = 0
            st.next_allowed = now + self.min_poll
        elif result.status is ServerStatus.DENIED:
            st.disabled = True
            log.warning("ntp server refused us, not asking again",
                        extra={"server": str(server), "error": result.error})
        else:
            st.failures += 1
            # RATE asks us to slow down more than a plain failure does.
            factor = 4 if result.status is ServerStatus.KOD_RATE else 2
            st.next_allowed = now + min(self.min_poll * factor ** st.failures, self.max_backoff)
            log.info("ntp poll failed", extra={"server": str(server), "status": str(result.status),
                                               "error": result.error, "failures": st.failures})
        return result
