"""Session records: the state of each session with one remote device, and its storage format.

A :class:`SessionRecord` is immutable. Internally it holds :class:`SessionState` entries that are
only ever mutated as fresh clones inside :mod:`evolink.signal.session` before a new record is built,
so a record handed to a caller never changes.

Storage format (``to_bytes``): the protobuf ``evolink.signal.SessionRecordStructure`` (see
``src/evolink/wire/proto/signal.proto``) with ``version = 1``. Times are a logical clock kept in
the record (``clock``), bumped by every change: libsignal-JS orders sessions by ``Date.now()``,
which a pure function cannot read, and only the order matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evolink.signal.errors import InvalidRecord
from evolink.wire.crypto import KeyPair
from evolink.wire.proto import signal_pb2 as pb

RECORD_VERSION = 1
MAX_SESSIONS = 40  # libsignal-JS CLOSED_SESSIONS_MAX: a record keeps at most 40 session entries
MAX_RECEIVER_CHAINS = 5  # libsignal Java/Go: receiving chains kept per session (JS keeps all)
MAX_SKIPPED_KEYS = 2000  # per chain, and libsignal's "messages into the future" limit
MAX_RECORD_BYTES = 16 << 20  # refuse to parse anything larger than the bounds above allow


@dataclass(slots=True)
class Chain:
    """A sending or receiving chain; ``key`` is ``None`` once the chain is closed."""

    sending: bool
    counter: int
    key: bytes | None
    message_keys: dict[int, bytes] = field(default_factory=dict)  # skipped keys, oldest first

    def clone(self) -> Chain:
        return Chain(self.sending, self.counter, self.key, dict(self.message_keys))


@dataclass(slots=True)
class PendingPreKey:
    """Set on an initiator's session until the peer's first message decrypts (pkmsg until then)."""

    signed_pre_key_id: int
    pre_key_id: int | None
    base_key: bytes
    our_registration_id: int


@dataclass(slots=True)
class SessionState:
    remote_registration_id: int
    remote_identity: bytes
    base_key: bytes
    base_key_ours: bool
    root_key: bytes
    our_ratchet: KeyPair
    last_remote_ratchet: bytes
    previous_counter: int
    chains: dict[bytes, Chain]  # ratchet public key (raw) → chain, in creation order
    pending: PendingPreKey | None
    used_at: int = 0
    closed_at: int = 0  # 0 = open

    @property
    def is_open(self) -> bool:
        return self.closed_at == 0

    def clone(self) -> SessionState:
        return SessionState(
            self.remote_registration_id, self.remote_identity, self.base_key, self.base_key_ours,
            self.root_key, self.our_ratchet, self.last_remote_ratchet, self.previous_counter,
            {k: c.clone() for k, c in self.chains.items()}, self.pending, self.used_at, self.closed_at,
        )


class SessionRecord:
    """All sessions with one remote device (one :class:`~evolink.signal.ProtocolAddress`).

    At most one session is *open* (used to encrypt); up to ``MAX_SESSIONS - 1`` closed ones are
    kept so that late messages of a replaced session still decrypt. Immutable: operations in
    :mod:`evolink.signal.session` return new records. ``SessionRecord()`` is the empty record.
    """

    __slots__ = ("_clock", "_states")

    def __init__(self, states: tuple[SessionState, ...] = (), clock: int = 0) -> None:
        self._states = states
        self._clock = clock

    # ---------------------------------------------------------------------------- queries
    @property
    def states(self) -> tuple[SessionState, ...]:
        """Internal: the session entries (do not mutate them; clone first)."""
        return self._states

    @property
    def clock(self) -> int:
        return self._clock

    def open_state(self) -> SessionState | None:
        for s in self._states:
            if s.is_open:
                return s
        return None

    def has_open_session(self) -> bool:
        """True when :func:`~evolink.signal.encrypt` can be called."""
        return self.open_state() is not None

    @property
    def remote_identity_key(self) -> bytes | None:
        """Raw 32-byte identity key of the peer in the open session (``None`` without one)."""
        s = self.open_state()
        return s.remote_identity if s else None

    @property
    def remote_registration_id(self) -> int | None:
        """The peer's registration id in the open session (``None`` without one)."""
        s = self.open_state()
        return s.remote_registration_id if s else None

    @property
    def session_count(self) -> int:
        return len(self._states)

    def by_recent_use(self) -> list[SessionState]:
        """Sessions most recently used first (the open one first on ties), as libsignal tries them."""
        return sorted(self._states, key=lambda s: (s.used_at, s.is_open), reverse=True)

    def __repr__(self) -> str:
        return f"<SessionRecord sessions={len(self._states)} open={self.has_open_session()}>"

    # ---------------------------------------------------------------------------- updates
    def replacing(self, old: SessionState, new: SessionState, *, used: bool = True) -> SessionRecord:
        """A new record where ``old`` (by identity) is replaced by ``new``.

        ``used`` marks ``new`` as the most recently used session; like libsignal-JS, only a
        decryption does that (encrypting does not change the order sessions are tried in).
        """
        if not used:
            return SessionRecord(tuple(new if s is old else s for s in self._states), self._clock)
        clock = self._clock + 1
        new.used_at = clock
        return SessionRecord(tuple(new if s is old else s for s in self._states), clock)

    def with_new_session(self, new: SessionState) -> SessionRecord:
        """A new record with ``new`` as the open session: the open one is closed, old ones pruned."""
        clock = self._clock + 1
        states: list[SessionState] = []
        for s in self._states:
            if s.is_open:
                s = s.clone()
                s.closed_at = clock
            states.append(s)
        new.used_at = clock
        new.closed_at = 0
        states.append(new)
        while len(states) > MAX_SESSIONS:
            oldest = min((s for s in states if not s.is_open), key=lambda s: s.closed_at)
            states.remove(oldest)
        return SessionRecord(tuple(states), clock)

    # ------------------------------------------------------------------------ serialization
    def to_bytes(self) -> bytes:
        out = pb.SessionRecordStructure(version=RECORD_VERSION, clock=self._clock)
        for s in self._states:
            r = out.sessions.add(
                remoteRegistrationId=s.remote_registration_id, remoteIdentityKey=s.remote_identity,
                baseKey=s.base_key, baseKeyOurs=s.base_key_ours, rootKey=s.root_key,
                ourRatchetPrivate=s.our_ratchet.private, ourRatchetPublic=s.our_ratchet.public,
                lastRemoteRatchetKey=s.last_remote_ratchet, previousCounter=s.previous_counter,
                usedAt=s.used_at, closedAt=s.closed_at,
            )
            for key, c in s.chains.items():
                cr = r.chains.add(ratchetKey=key, sending=c.sending, counter=c.counter)
                if c.key is not None:
                    cr.chainKey = c.key
                for idx, seed in c.message_keys.items():
                    cr.messageKeys.add(index=idx, seed=seed)
            if s.pending is not None:
                p = r.pendingPreKey
                p.signedPreKeyId = s.pending.signed_pre_key_id
                p.baseKey = s.pending.base_key
                p.ourRegistrationId = s.pending.our_registration_id
                if s.pending.pre_key_id is not None:
                    p.preKeyId = s.pending.pre_key_id
        return out.SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        """Parse a stored record; anything malformed is :class:`~evolink.signal.errors.InvalidRecord`."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidRecord(f"session record: expected bytes, got {type(data).__name__}")
        if len(data) > MAX_RECORD_BYTES:
            raise InvalidRecord(f"session record too large ({len(data)} bytes)")
        msg = pb.SessionRecordStructure()
        try:
            msg.ParseFromString(bytes(data))
        except Exception as exc:  # protobuf backends raise varied types on garbage
            raise InvalidRecord(f"session record: malformed ({exc})") from exc
        if msg.version != RECORD_VERSION:
            raise InvalidRecord(f"session record: unknown format version {msg.version}")
        if len(msg.sessions) > MAX_SESSIONS:
            raise InvalidRecord(f"session record: {len(msg.sessions)} sessions (max {MAX_SESSIONS})")
        states = tuple(_state_from_pb(r) for r in msg.sessions)
        if sum(1 for s in states if s.is_open) > 1:
            raise InvalidRecord("session record: more than one open session")
        return cls(states, msg.clock)


def _key(what: str, value: bytes) -> bytes:
    if len(value) != 32:
        raise InvalidRecord(f"session record: {what} must be 32 bytes, got {len(value)}")
    return bytes(value)


def _state_from_pb(r: pb.SessionStateRecord) -> SessionState:
    our = KeyPair(private=_key("ratchet private", r.ourRatchetPrivate),
                  public=_key("ratchet public", r.ourRatchetPublic))
    chains: dict[bytes, Chain] = {}
    receiving = 0
    for cr in r.chains:
        if len(cr.messageKeys) > MAX_SKIPPED_KEYS:
            raise InvalidRecord("session record: too many skipped keys in a chain")
        key = _key("chain ratchet key", cr.ratchetKey)
        if key in chains:
            raise InvalidRecord("session record: duplicate chain")
        receiving += not cr.sending
        chains[key] = Chain(
            sending=cr.sending, counter=cr.counter,
            key=_key("chain key", cr.chainKey) if cr.HasField("chainKey") else None,
            message_keys={mk.index: _key("message key", mk.seed) for mk in cr.messageKeys},
        )
    if receiving > MAX_RECEIVER_CHAINS or len(chains) > MAX_RECEIVER_CHAINS + 1:
        raise InvalidRecord("session record: too many chains")
    if any(c.sending and k != our.public for k, c in chains.items()):
        raise InvalidRecord("session record: a sending chain that is not our ratchet key's")
    pending = None
    if r.HasField("pendingPreKey"):
        p = r.pendingPreKey
        pending = PendingPreKey(
            signed_pre_key_id=p.signedPreKeyId,
            pre_key_id=p.preKeyId if p.HasField("preKeyId") else None,
            base_key=_key("pending base key", p.baseKey), our_registration_id=p.ourRegistrationId,
        )
    return SessionState(
        remote_registration_id=r.remoteRegistrationId,
        remote_identity=_key("remote identity", r.remoteIdentityKey),
        base_key=_key("base key", r.baseKey), base_key_ours=r.baseKeyOurs,
        root_key=_key("root key", r.rootKey), our_ratchet=our,
        last_remote_ratchet=_key("last remote ratchet", r.lastRemoteRatchetKey),
        previous_counter=r.previousCounter, chains=chains, pending=pending,
        used_at=r.usedAt, closed_at=r.closedAt,
    )
