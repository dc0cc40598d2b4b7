"""Frame layer (wa-protocol §1.2–1.3): the connection intro and 3-byte length framing.

Client → server: the first WebSocket message is ``intro ‖ len3 ‖ frame``, where the intro is the
4-byte header ``57 41 06 03`` (also the Noise prologue) or, for a Baileys client with stored routing
info, ``"ED" 00 01 ‖ len3 ‖ routing_info ‖ 57 41 06 03``. Every later frame is ``len3 ‖ payload``.
Both directions may split or coalesce frames across WebSocket messages, so the readers here are
incremental and accept any chunk boundaries.

The readers are poisoned by the first error: a length-prefixed stream cannot be resynchronised, so
every later ``feed`` raises the same :class:`~evolink.wire.errors.FrameError`.
"""

from __future__ import annotations

from typing import Final

from evolink.wire.errors import FrameError

INTRO_HEADER: Final = b"WA\x06\x03"
EDGE_ROUTING_PREFIX: Final = b"ED\x00\x01"
MAX_FRAME_SIZE: Final = (1 << 24) - 1
MAX_ROUTING_INFO_SIZE: Final = 4096
"""Largest routing info a server accepts in the ED intro (real values are a few dozen bytes)."""

_LEN_SIZE: Final = 3


def _len3(n: int) -> bytes:
    return n.to_bytes(_LEN_SIZE, "big")


def encode_frame(payload: bytes) -> bytes:
    """``len3 ‖ payload``; raises :class:`FrameError` if the payload does not fit in 3 bytes."""
    if len(payload) > MAX_FRAME_SIZE:
        raise FrameError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_SIZE}")
    return _len3(len(payload)) + bytes(payload)


def client_intro(routing_info: bytes | None = None) -> bytes:
    """The bytes a client sends before its first frame (plain header, or the ED edge-routing form)."""
    if not routing_info:
        # Baileys only uses the ED form when routing info is present and non-empty.
        return INTRO_HEADER
    if len(routing_info) > MAX_FRAME_SIZE:
        raise FrameError(f"routing info of {len(routing_info)} bytes does not fit in 3 length bytes")
    return EDGE_ROUTING_PREFIX + _len3(len(routing_info)) + bytes(routing_info) + INTRO_HEADER


class FrameReader:
    """Incremental reassembly of ``len3 ‖ payload`` frames from arbitrary chunks."""

    def __init__(self, max_size: int = MAX_FRAME_SIZE) -> None:
        if not 0 <= max_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_size must be in 0..{MAX_FRAME_SIZE}")
        self.max_size = max_size
        self._buf = bytearray()
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every frame completed by them (possibly none)."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        max_size = self.max_size
        while end - pos >= _LEN_SIZE:
            n = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            if n > max_size:
                self._error = FrameError(f"frame of {n} bytes exceeds max_size {max_size}")
                del buf[:]
                raise self._error
            stop = pos + _LEN_SIZE + n
            if stop > end:
                break
            frames.append(bytes(buf[pos + _LEN_SIZE : stop]))
            pos = stop
        if pos:
            del buf[:pos]
        return frames


class ServerFrameReader(FrameReader):
    """Server side of a client connection: consumes the intro first, then reads frames.

    Accepts the plain header and the ED edge-routing form, split anywhere; anything else raises
    :class:`FrameError` as soon as enough bytes have arrived to tell.
    """

    def __init__(
        self, max_size: int = MAX_FRAME_SIZE, *, max_routing_size: int = MAX_ROUTING_INFO_SIZE
    ) -> None:
        super().__init__(max_size)
        self.max_routing_size = max_routing_size
        self.routing_info: bytes | None = None
        self.intro_done = False
        self._intro = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._intro) + len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if self.intro_done:
            return super().feed(data)
        if self._error is not None:
            raise self._error
        self._intro += data
        try:
            consumed = self._parse_intro()
        except FrameError as exc:
            self._error = exc
            self._intro.clear()
            raise
        if consumed is None:
            return []
        rest = bytes(self._intro[consumed:])
        self._intro.clear()
        self.intro_done = True
        return super().feed(rest)

    def _parse_intro(self) -> int | None:
        """Bytes taken by a complete intro, None if more are needed; FrameError if it cannot be one."""
        buf = self._intro
        if not buf:
            return None
        head = bytes(buf[:4])
        if head[:1] == b"W":
            if INTRO_HEADER[: len(head)] != head:
                raise FrameError(f"bad intro header {head.hex()}")
            return 4 if len(head) == 4 else None
        if head[:1] != b"E" or EDGE_ROUTING_PREFIX[: len(head)] != head:
            raise FrameError(f"bad intro header {head.hex()}")
        if len(buf) < 7:
            return None
        n = (buf[4] << 16) | (buf[5] << 8) | buf[6]
        if n > self.max_routing_size:
            raise FrameError(f"routing info of {n} bytes exceeds {self.max_routing_size}")
        if n == 0:
            raise FrameError("edge-routing intro with empty routing info")
        header_at = 7 + n
        tail = bytes(buf[header_at : header_at + 4])
        if INTRO_HEADER[: len(tail)] != tail:
            raise FrameError(f"bad intro header after routing info {tail.hex()}")
        if len(tail) < 4:
            return None
        self.routing_info = bytes(buf[7:header_at])
        return header_at + 4


__all__ = [
    "EDGE_ROUTING_PREFIX",
    "INTRO_HEADER",
    "MAX_FRAME_SIZE",
    "MAX_ROUTING_INFO_SIZE",
    "FrameReader",
    "ServerFrameReader",
    "client_intro",
    "encode_frame",
]
