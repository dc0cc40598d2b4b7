"""Data access for the gateway. Every method is one short transaction (SQLite shares one connection).

A `Store` built with ``client_name`` (the gateway's DATABASE_CONNECTION_CLIENT_NAME) sees only that
installation's instances and outbox rows: lookups by name, token, id or number, listings, and the
webhook worker's queue are all scoped, so installations sharing one database cannot read,
reconfigure, connect or delete each other's instances. Instance names are unique per installation
(revision 0006), tokens across the database. Without ``client_name`` (tools, tests) nothing is
filtered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from evolink.store.db import Database
from evolink.store.models import (
    EngineSession,
    Instance,
    OutboxEvent,
    PairingAttempt,
    Proxy,
    Setting,
    Webhook,
    utcnow,
)
from evolink.store.outbox_seal import open_outbox, seal_outbox
from evolink.store.sealing import CredsCipher, SealError

if TYPE_CHECKING:
    from evolink.clock import Clock

log = logging.getLogger("evolink.store")

_Child = TypeVar("_Child", Setting, Webhook)  # the one-row-per-instance children
_Q = TypeVar("_Q", bound=Select)  # type: ignore[type-arg]  # any select, scoped in place

SETTING_FIELDS = ("reject_call", "msg_call", "groups_ignore", "always_online", "read_messages", "read_status",
                  "sync_full_history", "wavoip_token")


@dataclass(frozen=True, slots=True)
class ProxyRecord:
    """A stored proxy with its password opened (never log `password`)."""

    id: str
    instance_id: str
    enabled: bool
    host: str
    port: str
    protocol: str
    username: str
    password: str
    created_at: datetime
    updated_at: datetime


PROXY_FIELDS = ("enabled", "host", "port", "protocol", "username", "password")


class NameInUse(Exception):
    """An instance with this name already exists."""


class TokenInUse(Exception):
    """Another instance (of any installation on this database) already has this token.

    A token opens the instance it belongs to, so one token may never name two: the database keeps
    ``instances.token`` unique (migration 0005)."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    lane: str
    instance_name: str
    event: str
    url: str
    payload: dict[str, Any]
    headers: dict[str, Any] | None = None


class Store:
    def __init__(self, db: Database, cipher: CredsCipher | None = None, clock: Clock | None = None, *,
                 client_name: str | None = None) -> None:
        self.db = db
        self.client_name = client_name
        self.cipher = cipher or CredsCipher(None)
        # createdAt/updatedAt are shown to API clients: stamp them with the corrected clock when given.
        self._now: Callable[[], datetime] = clock.now if clock is not None else utcnow

    # --- instances -------------------------------------------------------------------------------

    async def create_instance(self, *, instance_id: str, name: str, token: str, integration: str,
                              number: str | None, client_name: str, settings: dict[str, Any],
                              webhook: dict[str, Any] | None) -> Instance:
        now = self._now()
        row = Instance(id=instance_id, name=name, token=token, integration=integration, number=number,
                       client_name=client_name, connection_status="close", created_at=now, updated_at=now)
        try:
            async with self.db.sessions.begin() as s:
                if (await s.execute(select(Instance.id).where(Instance.token == token))).first() is not None:
                    raise TokenInUse()
                s.add(row)
                await s.flush()
                s.add(Setting(instance_id=instance_id, created_at=now, updated_at=now, **_setting_values(settings)))
                if webhook is not None:
                    s.add(Webhook(instance_id=instance_id, created_at=now, updated_at=now, **webhook))
        except IntegrityError as exc:
            # a concurrent create won the race: say which unique column it took
            async with self.db.sessions() as s:
                taken = (await s.execute(select(Instance.id).where(Instance.token == token))).first()
            if taken is not None:
                raise TokenInUse() from exc
            raise NameInUse(name) from exc
        return row

    def _mine(self, q: _Q) -> _Q:
        return q if self.client_name is None else q.where(Instance.client_name == self.client_name)

    def _my_outbox(self, q: _Q) -> _Q:
        if self.client_name is None:
            return q
        return q.where(or_(OutboxEvent.client_name == self.client_name, OutboxEvent.client_name.is_(None)))

    async def get_instance(self, name: str) -> Instance | None:
        async with self.db.sessions() as s:
            q = self._mine(select(Instance).where(Instance.name == name))
            return (await s.execute(q)).scalar_one_or_none()

    async def list_instances(self, *, client_name: str | None = None, token: str | None = None,
                             name: str | None = None, instance_id: str | None = None,
                             number: str | None = None) -> list[Instance]:
        q = self._mine(select(Instance).order_by(Instance.created_at, Instance.name))
        if client_name is not None:
            q = q.where(Instance.client_name == client_name)
        if token is not None:
            q = q.where(Instance.token == token)
        if name is not None:
            q = q.where(Instance.name == name)
        if instance_id is not None:
            q = q.where(Instance.id == instance_id)
        if number is not None:
            q = q.where(Instance.number == number)
        async with self.db.sessions() as s:
            return list((await s.execute(q)).scalars())

    async def update_instance(self, instance_id: str, **values: Any) -> None:
        async with self.db.sessions.begin() as s:
            await s.execute(update(Instance).where(Instance.id == instance_id).values(updated_at=self._now(), **values))

    async def delete_instance(self, instance_id: str) -> None:
        async with self.db.sessions.begin() as s:
            # Explicit child deletes: SQLite enforces ON DELETE CASCADE only with the pragma, and
            # being explicit keeps both backends identical.
            for model in (Setting, Webhook, Proxy, EngineSession, PairingAttempt):
                await s.execute(delete(model).where(model.instance_id == instance_id))
            await s.execute(delete(Instance).where(Instance.id == instance_id))

    # --- settings / webhook ----------------------------------------------------------------------

    async def get_setting(self, instance_id: str) -> Setting | None:
        return await self._get_child(Setting, instance_id)

    async def upsert_setting(self, instance_id: str, values: dict[str, Any]) -> Setting:
        """Omitted or null settings take their defaults, on update as on insert."""
        return await self._upsert_child(Setting, instance_id, _setting_values(values))

    async def get_webhook(self, instance_id: str) -> Webhook | None:
        return await self._get_child(Webhook, instance_id)

    async def upsert_webhook(self, instance_id: str, values: dict[str, Any]) -> Webhook:
        return await self._upsert_child(Webhook, instance_id, values)

    async def _get_child(self, model: type[_Child], instance_id: str) -> _Child | None:
        async with self.db.sessions() as s:
            return (await s.execute(select(model).where(model.instance_id == instance_id))).scalar_one_or_none()

    async def _upsert_child(self, model: type[_Child], instance_id: str, values: dict[str, Any]) -> _Child:
        async with self.db.sessions.begin() as s:
            row = (await s.execute(select(model).where(model.instance_id == instance_id))).scalar_one_or_none()
            if row is None:
                now = self._now()
                row = model(instance_id=instance_id, created_at=now, updated_at=now, **values)
                s.add(row)
            else:
                for key, value in values.items():
                    setattr(row, key, value)
                row.updated_at = self._now()
            await s.flush()
            return row

    # --- proxy -----------------------------------------------------------------------------------

    async def get_proxy(self, instance_id: str) -> ProxyRecord | None:
        """The instance's proxy, password opened; SealError when it was sealed with another key."""
        async with self.db.sessions() as s:
            row = (await s.execute(select(Proxy).where(Proxy.instance_id == instance_id))).scalar_one_or_none()
        return None if row is None else self._proxy_record(row)

    async def upsert_proxy(self, instance_id: str, values: dict[str, Any]) -> ProxyRecord:
        """Insert or replace the proxy; `values` has every PROXY_FIELDS key, `password` in clear."""
        columns = {k: values[k] for k in PROXY_FIELDS}
        columns["password"] = self.cipher.seal(columns["password"], f"{instance_id}:proxy") if columns["password"] else ""
        async with self.db.sessions.begin() as s:
            row = (await s.execute(select(Proxy).where(Proxy.instance_id == instance_id))).scalar_one_or_none()
            now = self._now()
            if row is None:
                row = Proxy(instance_id=instance_id, created_at=now, updated_at=now, **columns)
                s.add(row)
            else:
                for key, value in columns.items():
                    setattr(row, key, value)
                row.updated_at = now
            await s.flush()
        return self._proxy_record(row)

    async def raw_proxy_password(self, instance_id: str) -> str | None:
        """The stored password column as is (tests check sealing)."""
        async with self.db.sessions() as s:
            return await s.scalar(select(Proxy.password).where(Proxy.instance_id == instance_id))

    def _proxy_record(self, row: Proxy) -> ProxyRecord:
        password = self.cipher.open(row.password, f"{row.instance_id}:proxy") if row.password else ""
        return ProxyRecord(id=row.id, instance_id=row.instance_id, enabled=row.enabled, host=row.host, port=row.port,
                           protocol=row.protocol, username=row.username, password=password,
                           created_at=row.created_at, updated_at=row.updated_at)

    # --- engine creds ----------------------------------------------------------------------------

    async def load_creds(self, instance_id: str) -> dict[str, Any] | None:
        async with self.db.sessions() as s:
            row = await s.get(EngineSession, instance_id)
            if row is None:
                return None
            data = json.loads(self.cipher.open(row.creds, instance_id))
            if not isinstance(data, dict):
                raise ValueError("stored creds are not a JSON object")
            return data

    async def save_creds(self, instance_id: str, creds: dict[str, Any]) -> None:
        sealed = self.cipher.seal(json.dumps(creds, separators=(",", ":"), sort_keys=True), instance_id)
        async with self.db.sessions.begin() as s:
            row = await s.get(EngineSession, instance_id)
            if row is None:
                s.add(EngineSession(instance_id=instance_id, creds=sealed))
            else:
                row.creds = sealed
                row.updated_at = utcnow()

    async def clear_creds(self, instance_id: str) -> None:
        async with self.db.sessions.begin() as s:
            await s.execute(delete(EngineSession).where(EngineSession.instance_id == instance_id))

    async def raw_creds(self, instance_id: str) -> str | None:
        """The stored column as is (tests check sealing)."""
        async with self.db.sessions() as s:
            row = await s.get(EngineSession, instance_id)
            return None if row is None else row.creds

    # --- pairing attempts ------------------------------------------------------------------------

    async def add_pairing_attempt(self, *, instance_id: str, method: str, code: str | None,
                                  issued_at_system: datetime, issued_at_corrected: datetime,
                                  issued_at_server: datetime | None, expires_at: datetime | None,
                                  outcome: str = "pending") -> int:
        suffix = code[-2:] if code else None  # never the whole code
        row = PairingAttempt(instance_id=instance_id, method=method, code_suffix=suffix,
                             issued_at_system=issued_at_system, issued_at_corrected=issued_at_corrected,
                             issued_at_server=issued_at_server, expires_at=expires_at, outcome=outcome)
        if outcome != "pending":
            row.finished_at = issued_at_corrected
            row.duration_seconds = 0.0
        async with self.db.sessions.begin() as s:
            s.add(row)
            await s.flush()
            return row.id

    async def finish_pairing_attempts(self, instance_id: str, outcome: str, at: datetime) -> list[PairingAttempt]:
        """Close every pending attempt of the instance; returns the closed rows."""
        async with self.db.sessions.begin() as s:
            rows = list((await s.execute(select(PairingAttempt).where(
                PairingAttempt.instance_id == instance_id, PairingAttempt.outcome == "pending"))).scalars())
            for row in rows:
                row.outcome = outcome
                row.finished_at = at
                row.duration_seconds = max(0.0, (at - row.issued_at_corrected).total_seconds())
            return rows

    async def list_pairing_attempts(self, instance_id: str) -> list[PairingAttempt]:
        async with self.db.sessions() as s:
            q = select(PairingAttempt).where(PairingAttempt.instance_id == instance_id).order_by(PairingAttempt.id)
            return list((await s.execute(q)).scalars())

    # --- outbox ----------------------------------------------------------------------------------

    async def enqueue(self, items: Iterable[OutboxItem]) -> int:
        rows = []
        for i in items:  # payload and headers sealed at rest (store/outbox_seal.py)
            payload, headers = seal_outbox(self.cipher, i.lane, i.payload, i.headers)
            rows.append(OutboxEvent(lane=i.lane, client_name=self.client_name, instance_name=i.instance_name,
                                    event=i.event, url=i.url, payload=payload, headers=headers, status="pending",
                                    attempts=0, next_attempt_at=0.0))
        if not rows:
            return 0
        async with self.db.sessions.begin() as s:
            s.add_all(rows)
        return len(rows)

    async def due_heads(self, now: float, limit: int = 200) -> Sequence[OutboxEvent]:
        """The oldest pending event of each lane, if it is due: later ones wait (per-lane order).

        Rows come back opened (plaintext payload and headers, detached from the session). A row sealed
        with another key is marked failed with the reason (kept, never delivered as garbage)."""
        q = (select(OutboxEvent).where(OutboxEvent.id.in_(self._my_outbox(_lane_heads())),
                                       OutboxEvent.next_attempt_at <= now)
             .order_by(OutboxEvent.id).limit(limit))
        async with self.db.sessions() as s:
            rows = list((await s.execute(q)).scalars())
            s.expunge_all()
        out, unreadable = [], []
        for row in rows:
            try:
                row.payload, row.headers = open_outbox(self.cipher, row.lane, row.payload, row.headers)
            except SealError as exc:
                unreadable.append((row.id, str(exc)))
                continue
            out.append(row)
        for event_id, reason in unreadable:
            log.error("outbox row does not open with this key; marked failed", extra={"outbox_id": event_id})
            await self.mark_outbox(event_id, status="failed", attempts=0, error=f"SealError: {reason}")
        return out

    async def next_due_at(self, exclude_lanes: Iterable[str] = ()) -> float | None:
        """When the earliest lane head (outside `exclude_lanes`, e.g. those in flight) becomes due."""
        q = select(func.min(OutboxEvent.next_attempt_at)).where(OutboxEvent.id.in_(self._my_outbox(_lane_heads())))
        excluded = list(exclude_lanes)
        if excluded:
            q = q.where(OutboxEvent.lane.not_in(excluded))
        async with self.db.sessions() as s:
            value = await s.scalar(q)
            return None if value is None else float(value)

    async def mark_outbox(self, event_id: int, *, status: str, attempts: int, next_attempt_at: float = 0.0,
                          error: str | None = None) -> None:
        values: dict[str, Any] = {"status": status, "attempts": attempts, "next_attempt_at": next_attempt_at,
                                  "last_error": error}
        if status != "pending":
            values["finished_at"] = utcnow()
        async with self.db.sessions.begin() as s:
            await s.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(**values))

    async def claim_outbox(self, event_id: int, seen_due: float, until: float) -> bool:
        """Cluster mode: take a due row for delivery by moving its `next_attempt_at` (compare-and-set
        on the value read); False if another node took it first. A node that dies mid-delivery leaves
        the row due again at `until` (at-least-once; the event id lets receivers drop a repeat)."""
        async with self.db.sessions.begin() as s:
            result = await s.execute(update(OutboxEvent).where(
                OutboxEvent.id == event_id, OutboxEvent.status == "pending",
                OutboxEvent.next_attempt_at == seen_due).values(next_attempt_at=until))
            return bool(getattr(result, "rowcount", 0))

    async def drop_pending_outbox(self, instance_name: str) -> int:
        """Forget the events still waiting for an instance's destinations (the instance is being deleted)."""
        async with self.db.sessions.begin() as s:
            q = delete(OutboxEvent).where(OutboxEvent.instance_name == instance_name, OutboxEvent.status == "pending")
            if self.client_name is not None:  # only this installation's rows (and unowned legacy ones)
                q = q.where(or_(OutboxEvent.client_name == self.client_name, OutboxEvent.client_name.is_(None)))
            result = await s.execute(q)
            return int(getattr(result, "rowcount", 0) or 0)

    async def prune_outbox(self, finished_before: datetime, failed_before: datetime | None = None) -> int:
        """Forget this installation's delivered events finished before `finished_before`, and failed ones
        finished before `failed_before` (None: failed rows stay)."""
        done = (OutboxEvent.status == "delivered") & (OutboxEvent.finished_at < finished_before)
        if failed_before is not None:
            done = done | ((OutboxEvent.status == "failed") & (OutboxEvent.finished_at < failed_before))
        if self.client_name is not None:  # this installation's rows and unowned legacy ones
            done = done & or_(OutboxEvent.client_name == self.client_name, OutboxEvent.client_name.is_(None))
        async with self.db.sessions.begin() as s:
            result = await s.execute(delete(OutboxEvent).where(done))
            return int(getattr(result, "rowcount", 0) or 0)

    async def outbox_counts(self) -> dict[str, int]:
        async with self.db.sessions() as s:
            q = self._my_outbox(select(OutboxEvent.status, func.count()).group_by(OutboxEvent.status))
            rows = (await s.execute(q)).all()
            return {str(status): int(n) for status, n in rows}


def _lane_heads() -> Select[int]:
    """The id of each lane's oldest pending event (a lane's later events wait behind it)."""
    return select(func.min(OutboxEvent.id)).where(OutboxEvent.status == "pending").group_by(OutboxEvent.lane)


def _setting_values(values: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = {k: ("" if k in ("msg_call", "wavoip_token") else False) for k in SETTING_FIELDS}
    for key in SETTING_FIELDS:
        if values.get(key) is not None:
            defaults[key] = values[key]
    return defaults
