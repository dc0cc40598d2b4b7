"""Instance leases for cluster mode, in PostgreSQL (table `instance_leases`, migration 0009).

Why PostgreSQL and not Redis: the instance rows and the creds a node writes live in PostgreSQL, so
the fencing token can be checked in the same statement as the write (`update_instance_fenced`): a
stale owner's write is refused atomically, not after a round trip to another system. And every
expiry is computed by one clock, the database server's `now()`, so nodes' clocks may drift.

A lease is (instance, owner node, token, expires_at). `token` grows by one each time ownership
changes hands (or an owner re-acquires after its lease expired): a holder of an older token is stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select, text, update

from evolink.store.cluster_models import InstanceLease
from evolink.store.db import Database
from evolink.store.models import Instance

_ACQUIRE = text("""
INSERT INTO instance_leases AS l (instance_id, owner, token, expires_at)
VALUES (:id, :node, 1, now() + make_interval(secs => :ttl))
ON CONFLICT (instance_id) DO UPDATE
   SET owner = EXCLUDED.owner,
       token = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_at > now() THEN l.token ELSE l.token + 1 END,
       expires_at = EXCLUDED.expires_at
 WHERE l.owner = EXCLUDED.owner AND l.expires_at > now() OR l.expires_at <= now()
RETURNING token
""")

_RENEW = text("""
UPDATE instance_leases SET expires_at = now() + make_interval(secs => :ttl)
 WHERE owner = :node AND expires_at > now()
RETURNING instance_id, token
""")

_RELEASE = text("""
UPDATE instance_leases SET expires_at = now() - interval '1 millisecond'
 WHERE owner = :node AND (CAST(:id AS text) IS NULL OR instance_id = :id)
""")

_OWNERS = text("""
SELECT l.instance_id, l.owner, l.token, l.expires_at, l.expires_at > now() AS live
  FROM instance_leases l
""")

_UNOWNED = text("""
SELECT i.id FROM instances i
  LEFT JOIN instance_leases l ON l.instance_id = i.id
 WHERE (CAST(:client AS text) IS NULL OR i.client_name = :client)
   AND i.connection_status IN ('open', 'connecting')
   AND (l.instance_id IS NULL OR l.expires_at <= now())
 ORDER BY i.created_at
""")

_HEARTBEAT = text("""
INSERT INTO cluster_nodes AS n (node_id, url, client_name, started_at, heartbeat_at)
VALUES (:node, :url, :client, now(), now())
ON CONFLICT (node_id) DO UPDATE SET url = EXCLUDED.url, heartbeat_at = now()
""")

_NODES = text("""
SELECT node_id, url, heartbeat_at, heartbeat_at > now() - make_interval(secs => :ttl) AS live
  FROM cluster_nodes WHERE CAST(:client AS text) IS NULL OR client_name = :client ORDER BY node_id
""")

_FORGET_NODE = text("DELETE FROM cluster_nodes WHERE node_id = :node")

_FENCED_STATUS = text("""
UPDATE instances SET connection_status = :status, updated_at = now()
 WHERE id = :id AND EXISTS (SELECT 1 FROM instance_leases l WHERE l.instance_id = :id AND l.owner = :node
                            AND l.token = :token AND l.expires_at > now())
""")


class LeaseUnsupported(RuntimeError):
    """Cluster mode needs PostgreSQL."""


@dataclass(frozen=True, slots=True)
class LeaseRow:
    instance_id: str
    owner: str
    token: int
    expires_at: datetime
    live: bool


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    url: str | None
    heartbeat_at: datetime
    live: bool


class LeaseRepo:
    """The SQL of leases and nodes; every instant is the database server's `now()`."""

    def __init__(self, db: Database, *, client_name: str | None = None) -> None:
        if db.dialect != "postgresql":
            raise LeaseUnsupported("cluster mode needs DATABASE_PROVIDER=postgresql")
        self.db = db
        self.client_name = client_name

    async def acquire(self, instance_id: str, node: str, ttl: float) -> int | None:
        """The fencing token if `node` holds the lease now (new, renewed or taken over), else None."""
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(_ACQUIRE, {"id": instance_id, "node": node, "ttl": ttl})).first()
        return None if row is None else int(row[0])

    async def renew(self, node: str, ttl: float) -> dict[str, int]:
        """Extend every live lease of `node`; {instance id: token} of those it still holds."""
        async with self.db.engine.begin() as conn:
            rows = (await conn.execute(_RENEW, {"node": node, "ttl": ttl})).all()
        return {str(r[0]): int(r[1]) for r in rows}

    async def release(self, node: str, instance_id: str | None = None) -> None:
        """Expire `node`'s lease(s) now, so another node may take them at once (graceful stop)."""
        async with self.db.engine.begin() as conn:
            await conn.execute(_RELEASE, {"node": node, "id": instance_id})

    async def leases(self) -> dict[str, LeaseRow]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(_OWNERS)).all()
        return {str(r[0]): LeaseRow(str(r[0]), str(r[1]), int(r[2]), r[3], bool(r[4])) for r in rows}

    async def unowned(self) -> list[str]:
        """Instances that should be connected (open/connecting) whose lease is free or expired."""
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(_UNOWNED, {"client": self.client_name})).all()
        return [str(r[0]) for r in rows]

    async def heartbeat(self, node: str, url: str | None) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(_HEARTBEAT, {"node": node, "url": url, "client": self.client_name})

    async def nodes(self, ttl: float) -> list[NodeRow]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(_NODES, {"ttl": ttl, "client": self.client_name})).all()
        return [NodeRow(str(r[0]), r[1], r[2], bool(r[3])) for r in rows]

    async def forget_node(self, node: str) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(_FORGET_NODE, {"node": node})

    async def set_status_fenced(self, instance_id: str, node: str, token: int, status: str) -> bool:
        """Write the connection status only while (`node`, `token`) holds a live lease."""
        async with self.db.engine.begin() as conn:
            result = await conn.execute(_FENCED_STATUS, {"id": instance_id, "node": node, "token": token,
                                                         "status": status})
        return bool(result.rowcount)

    async def update_instance_fenced(self, instance_id: str, node: str, token: int, values: dict[str, Any]) -> bool:
        """`Store.update_instance`, but only while (`node`, `token`) holds a live lease: a stale owner's
        write is refused in the same statement. False when refused."""
        held = exists(select(InstanceLease.instance_id).where(
            InstanceLease.instance_id == instance_id, InstanceLease.owner == node, InstanceLease.token == token,
            InstanceLease.expires_at > func.now()))
        stmt = update(Instance).where(Instance.id == instance_id, held).values(**values)
        async with self.db.sessions.begin() as s:
            result = await s.execute(stmt.execution_options(synchronize_session=False))
        return bool(getattr(result, "rowcount", 0))
