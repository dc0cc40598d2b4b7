"""WABinary: the binary XML-ish node format carried inside Noise transport frames (wa-protocol §5).

The encoder reproduces Baileys 7.0.0-rc14 (``WABinary/encode.js``) byte for byte, including its
string-choice order (token → double token → nibble → hex → JID → raw) and the way it turns any
``user[_agent][:device]@server`` string into a JID tag. The decoder returns what Baileys'
``decodeBinaryNode`` returns (JIDs as strings, BINARY content as bytes), but it is hardened for
untrusted input: every failure is a :class:`~evolink.wire.errors.DecodeError`, nesting depth and
inflated size are bounded, and (unlike Baileys, like whatsmeow) trailing bytes are refused unless
``allow_trailing=True``.

The decoder is one iterative loop over ``bytes`` (no per-node call) with the common string shapes
(tokens, packed numbers/ids, JIDs, short text) decoded inline; truncation is detected by letting
``bytes.__getitem__`` raise ``IndexError`` and converting it once at the top, instead of
bounds-checking every byte in Python (slices are bounds-checked explicitly, since they never raise).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from evolink.wire.errors import DecodeError, EncodeError
from evolink.wire.tokens import DOUBLE_BYTE, SINGLE_BYTE, TOKEN_BYTES

# --- tags (wa-protocol §5.2) -------------------------------------------------------------------
LIST_EMPTY: Final = 0
DICTIONARY_0: Final = 236
DICTIONARY_1: Final = 237
DICTIONARY_2: Final = 238
DICTIONARY_3: Final = 239
INTEROP_JID: Final = 245
FB_JID: Final = 246
AD_JID: Final = 247
LIST_8: Final = 248
LIST_16: Final = 249
JID_PAIR: Final = 250
HEX_8: Final = 251
BINARY_8: Final = 252
BINARY_20: Final = 253
BINARY_32: Final = 254
NIBBLE_8: Final = 255
PACKED_MAX: Final = 127

S_WHATSAPP_NET: Final = "s.whatsapp.net"
SERVER_JID: Final = "@s.whatsapp.net"

# --- limits ------------------------------------------------------------------------------------
DEFAULT_MAX_DEPTH: Final = 64
"""Maximum node nesting accepted by :func:`decode` (real stanzas nest < 10 deep)."""
HARD_MAX_DEPTH: Final = 256
"""Upper bound for ``max_depth`` and for :func:`encode` (keeps us far from Python's recursion limit)."""
DEFAULT_MAX_SIZE: Final = 1 << 24
"""Maximum body size (after zlib inflation) accepted by :func:`decode`: one maximal frame."""
MAX_JID_NESTING: Final = 16
"""JID parts are strings and may themselves be JIDs; Baileys allows it, we bound it."""

_FLAG_COMPRESSED: Final = 0x02

NodeContent: TypeAlias = "bytes | str | list[Node] | None"


@dataclass(slots=True)
class Node:
    """One stanza element: ``tag``, string ``attrs`` and optional content (bytes, string or children)."""

    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    content: NodeContent = None

    def child(self, tag: str) -> Node | None:
        """First child node with this tag, or None."""
        if type(self.content) is list:
            for item in self.content:
                if item.tag == tag:
                    return item
        return None

    def children(self, tag: str | None = None) -> list[Node]:
        """Child nodes (all of them, or those with ``tag``); empty when the content is not a list."""
        if type(self.content) is not list:
            return []
        if tag is None:
            return list(self.content)
        return [item for item in self.content if item.tag == tag]

    def attr(self, name: str, default: str | None = None) -> str | None:
        """Attribute value or ``default``."""
        return self.attrs.get(name, default)


# --- JIDs --------------------------------------------------------------------------------------
_DOMAIN_BY_SERVER: Final = {"lid": 1, "hosted": 128, "hosted.lid": 129}
_SERVER_BY_DOMAIN: Final = {1: "lid", 128: "hosted", 129: "hosted.lid"}


@dataclass(frozen=True, slots=True)
class Jid:
    """A parsed JID ``[integrator-]user[_agent][:device]@server``.

    The wire layer itself carries JIDs as strings (as Baileys does); this type is a convenience for
    code that needs the parts. ``str(jid)`` round-trips with :meth:`parse` for well-formed JIDs.
    """

    user: str
    server: str
    device: int = 0
    agent: int = 0
    integrator: int = 0

    @classmethod
    def parse(cls, s: str) -> Jid:
        """Parse a JID string; raises :class:`DecodeError` when it is not one."""
        at = s.find("@")
        if at < 0:
            raise DecodeError(f"not a JID (no '@'): {s[:64]!r}")
        server = s[at + 1 :]
        if not server:
            raise DecodeError(f"JID without a server: {s[:64]!r}")
        user_part = s[:at]
        device = agent = integrator = 0
        if ":" in user_part:
            user_part, _, dev = user_part.partition(":")
            device = _parse_small_int(dev, "device", s)
        if server == "interop" and "-" in user_part:
            integ, _, user_part = user_part.partition("-")
            integrator = _parse_small_int(integ, "integrator", s)
        if "_" in user_part:
            user_part, _, ag = user_part.partition("_")
            agent = _parse_small_int(ag, "agent", s)
        return cls(user_part, server, device, agent, integrator)

    def __str__(self) -> str:
        if self.server in ("msgr", "interop"):
            # FB and interop JIDs always carry the device (that is how decode spells them).
            prefix = f"{self.integrator}-" if self.server == "interop" else ""
            return f"{prefix}{self.user}:{self.device}@{self.server}"
        agent = f"_{self.agent}" if self.agent else ""
        device = f":{self.device}" if self.device else ""
        return f"{self.user}{agent}{device}@{self.server}"


def _parse_small_int(text: str, what: str, whole: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise DecodeError(f"bad JID {what} in {whole[:64]!r}")
    return int(text)


# --- JavaScript number coercions (Baileys' jidDecode + pushByte semantics) ---------------------
# Baileys computes the AD_JID device byte as ``(+device || 0) & 0xff`` and the domain byte from
# ``parseInt(agent)``; reproducing those coercions keeps odd inputs byte-identical.
_JS_WS: Final = "\t\n\v\f\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_DECIMAL_RE: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_JS_RADIX_RE: Final = re.compile(r"0([xXoObB])([0-9a-fA-F]+)")
_JS_RADIX: Final = {"x": 16, "o": 8, "b": 2}


def _int_to_js_number(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _js_to_number(s: str) -> float:
    """JavaScript ``+s`` (StringToNumber)."""
    t = s.strip(_JS_WS)
    if not t:
        return 0.0
    if _JS_DECIMAL_RE.fullmatch(t):
        return float(t)
    m = _JS_RADIX_RE.fullmatch(t)
    if m:
        try:
            return _int_to_js_number(int(m.group(2), _JS_RADIX[m.group(1).lower()]))
        except ValueError:
            return math.nan
    if t in ("Infinity", "+Infinity"):
        return math.inf
    if t == "-Infinity":
        return -math.inf
    return math.nan


def _js_parse_int(s: str) -> float:
    """JavaScript ``parseInt(s)`` (no radix argument)."""
    t = s.lstrip(_JS_WS)
    sign = 1
    if t[:1] in ("+", "-"):
        sign = -1 if t[0] == "-" else 1
        t = t[1:]
    digits = "0123456789"
    radix = 10
    if t[:2] in ("0x", "0X"):
        t = t[2:]
        radix = 16
        digits = "0123456789abcdefABCDEF"
    n = 0
    while n < len(t) and t[n] in digits:
        n += 1
    if n == 0:
        return math.nan
    return sign * _int_to_js_number(int(t[:n], radix))


def _js_byte(value: float) -> int:
    """``(value || 0) & 0xff`` in JavaScript (ToInt32, then the low byte)."""
    if value != value or value in (math.inf, -math.inf):
        return 0
    return int(value) & 0xFF


# --- encoder -----------------------------------------------------------------------------------
_NIBBLE_RE: Final = re.compile(r"[0-9.\-]{1,127}")
_HEX_RE: Final = re.compile(r"[0-9A-F]{1,127}")


def encode(node: Node) -> bytes:
    """Encode a node with the leading flags byte 0x00, exactly as Baileys' ``encodeBinaryNode``."""
    out = bytearray(b"\x00")
    _encode_node(node, out, 0)
    return bytes(out)


def _write_list_start(n: int, out: bytearray) -> None:
    if n == 0:
        out.append(LIST_EMPTY)
    elif n < 256:
        out += bytes((LIST_8, n))
    elif n < 65536:
        out += bytes((LIST_16, n >> 8, n & 0xFF))
    else:
        raise EncodeError(f"list of {n} items exceeds 65535")


def _byte_length_header(n: int) -> bytes:
    if n < 256:
        return bytes((BINARY_8, n))
    if n < 1 << 20:
        return bytes((BINARY_20, n >> 16, (n >> 8) & 0xFF, n & 0xFF))
    if n < 1 << 32:
        return bytes((BINARY_32,)) + n.to_bytes(4, "big")
    raise EncodeError(f"{n} bytes is too large to encode")


def _is_array_index(key: str) -> bool:
    # JavaScript orders such object keys first (ascending) in Object.keys().
    return (
        key.isascii()
        and key.isdigit()
        and (len(key) == 1 or key[0] != "0")
        and len(key) <= 10
        and int(key) <= 0xFFFFFFFE
    )


def _js_key_order(attrs: dict[str, str]) -> list[tuple[str, str]]:
    items = list(attrs.items())
    index_keys = [(int(k), k, v) for k, v in items if _is_array_index(k)]
    if not index_keys:
        return items
    index_keys.sort()
    return [(k, v) for _, k, v in index_keys] + [(k, v) for k, v in items if not _is_array_index(k)]


def _encode_node(node: Node, out: bytearray, depth: int) -> None:
    if depth > HARD_MAX_DEPTH:
        raise EncodeError(f"node nesting deeper than {HARD_MAX_DEPTH}")
    if type(node) is not Node:
        raise EncodeError(f"expected a Node, got {type(node).__name__}")
    tag = node.tag
    if not tag or type(tag) is not str:
        raise EncodeError("node tag must be a non-empty string")
    attrs = node.attrs
    content = node.content
    items: Iterable[tuple[str, str]]
    if attrs:
        if None in attrs.values():
            attrs = {k: v for k, v in attrs.items() if v is not None}
        try:
            numeric_first = min(attrs) < ":"  # some key may start with a digit: use JS key order
        except TypeError:
            raise EncodeError(f"attribute names of <{tag}> must be strings") from None
        items = _js_key_order(attrs) if numeric_first else attrs.items()
        _write_list_start(2 * len(attrs) + (1 if content is None else 2), out)
    else:
        items = ()
        out += b"\xf8\x01" if content is None else b"\xf8\x02"
    tb = TOKEN_BYTES.get(tag)
    if tb is not None:
        out += tb
    else:
        _write_string(tag, out, 0)
    for key, value in items:
        if type(key) is not str or type(value) is not str:
            raise EncodeError(f"attribute {key!r} of <{tag}> must map str to str")
        tb = TOKEN_BYTES.get(key)
        if tb is not None:
            out += tb
        else:
            _write_string(key, out, 0)
        tb = TOKEN_BYTES.get(value)
        if tb is not None:
            out += tb
        else:
            _write_string(value, out, 0)
    if content is None:
        return
    ctype = type(content)
    if ctype is list:
        assert isinstance(content, list)
        _write_list_start(len(content), out)
        for item in content:
            _encode_node(item, out, depth + 1)
    elif ctype is str:
        assert isinstance(content, str)
        tb = TOKEN_BYTES.get(content)
        if tb is not None:
            out += tb
        else:
            _write_string(content, out, 0)
    elif isinstance(content, (bytes, bytearray, memoryview)):
        data = content if type(content) is bytes else bytes(content)  # bytearray / memoryview
        out += _byte_length_header(len(data))
        out += data
    else:
        raise EncodeError(f"invalid content for <{tag}>: {type(content).__name__}")


def _write_string(s: str, out: bytearray, depth: int) -> None:
    """Everything writeString does after the token lookup (callers try ``TOKEN_BYTES`` first)."""
    if not s:
        out += b"\xfc\x00"  # Baileys writes "" as an empty BINARY_8, never as a token
        return
    n = len(s)
    if n <= PACKED_MAX:
        if _NIBBLE_RE.fullmatch(s):
            packed = s.replace("-", "a").replace(".", "b")
            if n & 1:
                out += bytes((NIBBLE_8, 128 | ((n + 1) >> 1)))
                out += bytes.fromhex(packed + "f")
            else:
                out += bytes((NIBBLE_8, n >> 1))
                out += bytes.fromhex(packed)
            return
        if _HEX_RE.fullmatch(s):
            if n & 1:
                out += bytes((HEX_8, 128 | ((n + 1) >> 1)))
                out += bytes.fromhex(s + "F")
            else:
                out += bytes((HEX_8, n >> 1))
                out += bytes.fromhex(s)
            return
    if "@" in s:
        _write_jid(s, out, depth)
        return
    try:
        raw = s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"string is not encodable as UTF-8: {exc.reason}") from None
    out += _byte_length_header(len(raw))
    out += raw


def _write_string_any(s: str, out: bytearray, depth: int) -> None:
    tb = TOKEN_BYTES.get(s)
    if tb is not None:
        out += tb
    else:
        _write_string(s, out, depth)


def _write_jid(s: str, out: bytearray, depth: int) -> None:
    # Mirrors Baileys' jidDecode + writeJid, including its quirks: only the first two ':' / '_'
    # parts count, the agent is dropped from JID_PAIR, and any non-empty device makes an AD_JID.
    if depth >= MAX_JID_NESTING:
        raise EncodeError("JID nested too deeply (too many '@')")
    at = s.index("@")
    server = s[at + 1 :]
    parts = s[:at].split(":")
    device = parts[1] if len(parts) > 1 else ""
    uparts = parts[0].split("_")
    user = uparts[0]
    if device:
        domain = _DOMAIN_BY_SERVER.get(server)
        if domain is None:
            agent = uparts[1] if len(uparts) > 1 else ""
            domain = _js_byte(_js_parse_int(agent)) if agent else 0
        dev = int(device) if device.isascii() and device.isdigit() and len(device) < 10 else None
        dev_byte = dev & 0xFF if dev is not None else _js_byte(_js_to_number(device))
        out += bytes((AD_JID, domain & 0xFF, dev_byte))
        _write_string_any(user, out, depth + 1)
    else:
        out.append(JID_PAIR)
        if user:
            _write_string_any(user, out, depth + 1)
        else:
            out.append(LIST_EMPTY)
        _write_string_any(server, out, depth + 1)


# --- decoder -----------------------------------------------------------------------------------
_SINGLE: Final = SINGLE_BYTE
# Tag byte -> single-byte token, or None for every other tag: one lookup instead of a range check.
_TOKEN: Final[tuple[str | None, ...]] = tuple(SINGLE_BYTE[t] if 0 < t < 236 else None for t in range(256))
_DOUBLE: Final = DOUBLE_BYTE
# The same, as "@<token>": the server half of a JID_PAIR is almost always a single-byte token.
_AT_TOKEN: Final[tuple[str | None, ...]] = tuple(None if s is None else f"@{s}" for s in _TOKEN)
# Nodes are built with __new__ + slot stores: the dataclass __init__ (a Python-level call through
# type.__call__) is the single most expensive step per decoded node.
_new_node: Final = Node.__new__


def _ad_jid_suffixes(server: str) -> tuple[str, ...]:
    return tuple(f":{device}@{server}" if device else f"@{server}" for device in range(256))


# AD_JID domain byte -> device byte -> ":<device>@<server>" (just "@<server>" for device 0): the
# device/server tail of a JID is a table lookup instead of int formatting.
_AD_JID_DEFAULT: Final = _ad_jid_suffixes(S_WHATSAPP_NET)
_AD_JID_SUFFIX: Final = {domain: _ad_jid_suffixes(server) for domain, server in _SERVER_BY_DOMAIN.items()}


def decode(
    data: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_size: int = DEFAULT_MAX_SIZE,
    allow_trailing: bool = False,
) -> Node:
    """Decode a frame body (flags byte + node) into a :class:`Node`.

    Flag 0x02 means the rest is zlib-compressed; it is inflated up to ``max_size`` bytes. Raises
    :class:`DecodeError` (and nothing else) on any malformed, truncated or oversized input.
    """
    if not 0 < max_depth <= HARD_MAX_DEPTH:
        raise ValueError(f"max_depth must be in 1..{HARD_MAX_DEPTH}")
    buf = data if type(data) is bytes else bytes(data)
    if not buf:
        raise DecodeError("empty input (no flags byte)")
    pos = 1
    if buf[0] & _FLAG_COMPRESSED:
        buf = _inflate(buf, max_size, allow_trailing)
        pos = 0
    elif len(buf) - 1 > max_size:
        raise DecodeError(f"body of {len(buf) - 1} bytes exceeds max_size {max_size}")
    try:
        node, pos = _read_tree(buf, pos, max_depth)
    except IndexError:
        raise DecodeError("truncated input (unexpected end of data)") from None
    if pos != len(buf) and not allow_trailing:
        raise DecodeError(f"{len(buf) - pos} trailing bytes after the node")
    return node


def _inflate(buf: bytes, max_size: int, allow_trailing: bool) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(memoryview(buf)[1:], max_size + 1)
    except zlib.error as exc:
        raise DecodeError(f"bad zlib body: {exc}") from None
    if len(out) > max_size:
        raise DecodeError(f"inflated body exceeds max_size {max_size}")
    if not inflater.eof:
        raise DecodeError("truncated zlib body")
    if inflater.unused_data and not allow_trailing:
        raise DecodeError("trailing bytes after the zlib body")
    return out


def _read_tree(buf: bytes, pos: int, max_depth: int) -> tuple[Node, int]:
    """Read one node (and its subtree) at ``pos``; return it and the position just after it.

    Iterative, not recursive: per-node Python calls and tuple returns were a large share of decode
    time. ``siblings``/``remaining`` are the child list being filled and how many children it still
    expects; ``stack`` holds the same pair for every enclosing level. The common string shapes
    (tokens, NIBBLE_8/HEX_8 numbers and ids, JID_PAIR/AD_JID JIDs, BINARY_8 text) are decoded
    inline for the same reason; anything else goes through the general :func:`_read_string`.
    """
    blen = len(buf)
    top: list[Node] = []
    siblings = top
    remaining = 1
    stack: list[tuple[list[Node], int]] = []
    depth = 1
    while True:
        t = buf[pos]
        if t == LIST_8:
            size = buf[pos + 1]
            pos += 2
        elif t == LIST_16:
            size = (buf[pos + 1] << 8) | buf[pos + 2]
            pos += 3
        else:
            raise DecodeError(f"invalid node: tag 0x{t:02x} is not a non-empty list")
        if size == 0:
            raise DecodeError("invalid node: empty list")
        t = buf[pos]
        pos += 1
        header = _TOKEN[t]
        if header is None:
            header, pos = _read_string(buf, pos, t, 0)
            if not header:
                raise DecodeError("invalid node: empty tag")
        n_attrs = (size - 1) >> 1
        attrs: dict[str, str] = {}
        if n_attrs:
            if pos + 2 * n_attrs > blen:
                raise DecodeError("truncated input (attribute list longer than data)")
            for _ in range(n_attrs):
                t = buf[pos]
                pos += 1
                key = _TOKEN[t]
                if key is None:
                    key, pos = _read_string(buf, pos, t, 0)
                t = buf[pos]
                pos += 1
                value = _TOKEN[t]
                if value is None:
                    if t == NIBBLE_8 or t == HEX_8:
                        n = buf[pos]
                        end = pos + 1 + (n & 0x7F)
                        if end > blen:
                            raise DecodeError("truncated input (packed string)")
                        value = buf[pos + 1 : end].hex()
                        pos = end
                        if t == HEX_8:
                            value = value.upper()[:-1] if n & 0x80 else value.upper()
                        elif n & 0x80:
                            u = value[:-1]  # odd length: digits + the 0xf pad
                            value = u if u.isdigit() and value[-1] == "f" else _nibbles(value, n)
                        elif not value.isdigit():
                            value = _nibbles(value, n)
                    elif t == JID_PAIR:
                        t = buf[pos]
                        if t == NIBBLE_8:
                            n = buf[pos + 1]
                            end = pos + 2 + (n & 0x7F)
                            if end > blen:
                                raise DecodeError("truncated input (packed string)")
                            user = buf[pos + 2 : end].hex()
                            pos = end
                            if n & 0x80:
                                u = user[:-1]  # odd length: digits + the 0xf pad
                                user = u if u.isdigit() and user[-1] == "f" else _nibbles(user, n)
                            elif not user.isdigit():
                                user = _nibbles(user, n)
                        elif t == LIST_EMPTY:  # server JIDs ("@s.whatsapp.net") have no user
                            user = ""
                            pos += 1
                        else:
                            user, pos = _read_string(buf, pos + 1, t, 1)
                        t = buf[pos]
                        server = _AT_TOKEN[t]
                        if server is not None:
                            value = user + server
                            pos += 1
                        else:
                            server, pos = _read_string(buf, pos + 1, t, 1)
                            if not server:
                                raise DecodeError("invalid JID pair: empty server")
                            value = f"{user}@{server}"
                    elif t == AD_JID:
                        domain = buf[pos]
                        device = buf[pos + 1]
                        t = buf[pos + 2]
                        if t == NIBBLE_8:
                            n = buf[pos + 3]
                            end = pos + 4 + (n & 0x7F)
                            if end > blen:
                                raise DecodeError("truncated input (packed string)")
                            user = buf[pos + 4 : end].hex()
                            pos = end
                            if n & 0x80:
                                u = user[:-1]  # odd length: digits + the 0xf pad
                                user = u if u.isdigit() and user[-1] == "f" else _nibbles(user, n)
                            elif not user.isdigit():
                                user = _nibbles(user, n)
                        else:
                            user, pos = _read_string(buf, pos + 3, t, 1)
                        value = user + _AD_JID_SUFFIX.get(domain, _AD_JID_DEFAULT)[device]
                    elif t == BINARY_8:
                        n = buf[pos]
                        end = pos + 1 + n
                        if end > blen:
                            raise DecodeError(f"truncated input (string of {n} bytes)")
                        # Invalid UTF-8 becomes U+FFFD, as Node's Buffer.toString does.
                        value = buf[pos + 1 : end].decode("utf-8", "replace")
                        pos = end
                    else:
                        value, pos = _read_string(buf, pos, t, 0)
                attrs[key] = value
        node = _new_node(Node)
        node.tag = header
        node.attrs = attrs
        siblings.append(node)
        remaining -= 1
        if size & 1:
            node.content = None
        else:
            t = buf[pos]
            pos += 1
            if t == LIST_8 or t == LIST_16:
                if t == LIST_8:
                    n = buf[pos]
                    pos += 1
                else:
                    n = (buf[pos] << 8) | buf[pos + 1]
                    pos += 2
                if pos + 3 * n > blen:
                    raise DecodeError("truncated input (child list longer than data)")
                children: list[Node] = []
                node.content = children
                if n:
                    stack.append((siblings, remaining))
                    siblings = children
                    remaining = n
                    depth += 1
                    if depth > max_depth:  # checked here: only descending can deepen the tree
                        raise DecodeError(f"node nesting deeper than {max_depth}")
                    continue
            elif t == BINARY_20:
                n = ((buf[pos] & 0x0F) << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
                end = pos + 3 + n
                if end > blen:
                    raise DecodeError(f"truncated input (binary content of {n} bytes)")
                node.content = buf[pos + 3 : end]
                pos = end
            elif t == BINARY_8 or t == BINARY_32:
                start, pos = _binary_span(buf, pos, t, "binary content")
                node.content = buf[start:pos]
            elif t == LIST_EMPTY:
                node.content = []
            else:
                node.content, pos = _read_string(buf, pos, t, 0)
        while not remaining:
            if not stack:
                return top[0], pos
            siblings, remaining = stack.pop()
            depth -= 1


def _binary_span(buf: bytes, pos: int, t: int, what: str) -> tuple[int, int]:
    """Start and end of a BINARY_8/20/32 body; ``pos`` is just after the tag byte ``t``."""
    if t == BINARY_8:
        n = buf[pos]
        pos += 1
    elif t == BINARY_20:
        n = ((buf[pos] & 0x0F) << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
        pos += 3
    else:
        n = (buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
        pos += 4
    end = pos + n
    if end > len(buf):
        raise DecodeError(f"truncated input ({what} of {n} bytes)")
    return pos, end


def _unpack(buf: bytes, pos: int, t: int) -> tuple[str, int]:
    """NIBBLE_8 / HEX_8 body at ``pos`` (the length byte)."""
    start = buf[pos]
    end = pos + 1 + (start & 0x7F)
    if end > len(buf):
        raise DecodeError("truncated input (packed string)")
    s = buf[pos + 1 : end].hex()
    if t == HEX_8:
        s = s.upper()
        return (s[:-1] if start & 0x80 else s), end
    if s.isdigit() and not start & 0x80:  # fast path: phone numbers, timestamps and ids are digits
        return s, end
    return _nibbles(s, start), end


def _nibbles(s: str, n: int) -> str:
    """A NIBBLE_8 body as ``bytes.hex()`` spells it, ``n`` its length byte: map, check, drop the pad."""
    if "c" in s or "d" in s or "e" in s:
        raise DecodeError("invalid nibble (12..14) in packed string")
    # code 15 is the pad; Baileys decodes it as NUL and only the odd flag drops it
    s = s.replace("a", "-").replace("b", ".").replace("f", "\x00")
    return s[:-1] if n & 0x80 else s


def _read_string(buf: bytes, pos: int, t: int, jdepth: int) -> tuple[str, int]:
    """Read a string whose tag byte ``t`` has already been consumed; ``pos`` is just after it."""
    if 0 < t < 236:
        return _SINGLE[t], pos
    if t == NIBBLE_8 or t == HEX_8:
        return _unpack(buf, pos, t)
    if t == JID_PAIR or t == AD_JID or t == FB_JID or t == INTEROP_JID:
        if jdepth >= MAX_JID_NESTING:
            raise DecodeError("JID nested too deeply")
        jdepth += 1
        if t == JID_PAIR:
            t = buf[pos]
            if t == NIBBLE_8:
                user, pos = _unpack(buf, pos + 1, t)
            else:
                user, pos = _read_string(buf, pos + 1, t, jdepth)
            t = buf[pos]
            if 0 < t < 236:
                return f"{user}@{_SINGLE[t]}", pos + 1
            server, pos = _read_string(buf, pos + 1, t, jdepth)
            if not server:
                raise DecodeError("invalid JID pair: empty server")
            return f"{user}@{server}", pos
        if t == AD_JID:
            domain = buf[pos]
            device = buf[pos + 1]
            t = buf[pos + 2]
            if t == NIBBLE_8:
                user, pos = _unpack(buf, pos + 3, t)
            else:
                user, pos = _read_string(buf, pos + 3, t, jdepth)
            return user + _AD_JID_SUFFIX.get(domain, _AD_JID_DEFAULT)[device], pos
        if t == FB_JID:
            user, pos = _read_string(buf, pos + 1, buf[pos], jdepth)
            device = (buf[pos] << 8) | buf[pos + 1]
            server, pos = _read_string(buf, pos + 3, buf[pos + 2], jdepth)
            return f"{user}:{device}@{server}", pos
        # INTEROP_JID: the server string is optional; Baileys falls back to "interop" when it cannot
        # be read and rewinds, so the byte is then read again as whatever comes next.
        user, pos = _read_string(buf, pos + 1, buf[pos], jdepth)
        device = (buf[pos] << 8) | buf[pos + 1]
        integrator = (buf[pos + 2] << 8) | buf[pos + 3]
        pos += 4
        try:
            server, pos = _read_string(buf, pos + 1, buf[pos], jdepth)
        except (DecodeError, IndexError):
            server = "interop"
        return f"{integrator}-{user}:{device}@{server}", pos
    if t == BINARY_8 or t == BINARY_20 or t == BINARY_32:
        start, end = _binary_span(buf, pos, t, "string")
        # Invalid UTF-8 becomes U+FFFD, as Node's Buffer.toString does.
        return buf[start:end].decode("utf-8", "replace"), end
    if DICTIONARY_0 <= t <= DICTIONARY_3:
        return _DOUBLE[t - DICTIONARY_0][buf[pos]], pos + 1
    if t == LIST_EMPTY:
        return "", pos
    raise DecodeError(f"invalid string tag 0x{t:02x}")


__all__ = [
    "AD_JID",
    "BINARY_8",
    "BINARY_20",
    "BINARY_32",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_SIZE",
    "DICTIONARY_0",
    "DICTIONARY_1",
    "DICTIONARY_2",
    "DICTIONARY_3",
    "FB_JID",
    "HEX_8",
    "INTEROP_JID",
    "JID_PAIR",
    "LIST_8",
    "LIST_16",
    "LIST_EMPTY",
    "NIBBLE_8",
    "SERVER_JID",
    "S_WHATSAPP_NET",
    "Jid",
    "Node",
    "NodeContent",
    "decode",
    "encode",
]
