"""Cluster mode: N gateway nodes share the instances of one PostgreSQL database.

Each instance is owned by one node through a lease with a fencing token (`store/leases.py`; why
PostgreSQL: see there). Only the owner runs the instance's engine, i.e. holds its WhatsApp socket.

The guarantees and how they are kept:
- **One owner.** A lease is taken with one atomic statement on the database clock; ownership
  changes bump the token.
- **A stale owner stops first.** The owner measures each lease on its own monotonic clock from the
  moment it *sent* the renewal, minus `margin`: the local deadline always falls before the lease
  expires on the database. Past the deadline without a successful renewal (database unreachable,
  process paused), the node closes every socket (`lease_lost`) before it does anything else, and
  writes nothing more: its status writes are fenced by the token in the same SQL statement, its
  webhooks are dropped once the deadline has passed. A paused process cannot close anything while
  it is paused; there the WhatsApp server is the arbiter: the new owner's login replaces the stale
  socket (440 "replaced"), a terminal close the stale node never retries (see docs/lifecycle.md),
  so the two never flap.
- **Takeover without a new link.** Every `interval` a node claims free or expired leases of
  instances stored as open/connecting (up to its fair share of the live nodes) and resumes them
  from their stored creds.
- **Graceful stop hands over at once.** On SIGTERM a node closes its sockets, then expires its
  leases (`release`) so the next scan of another node takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from evolink.store.leases import LeaseRepo

log = logging.getLogger("evolink.gateway.cluster")

DEFAULT_LEASE_SECONDS = 15.0


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(slots=True)
class LeaseBook:
    """What this node holds, on its monotonic clock (pure: the caller passes the instants).

    `deadline` is when this node must consider every lease lost unless a renewal succeeded: the send
    time of the last successful renewal + ttl - margin. The database expires the lease at its own
    `now()` at execution + ttl, which is later, so a node always stops before another may start.
    """

    ttl: float
    margin: float
    tokens: dict[str, int] = field(default_factory=dict)
    deadlines: dict[str, float] = field(default_factory=dict)
    confirmed: dict[str, float] = field(default_factory=dict)  # when the acquire answered

    def acquired(self, instance_id: str, token: int, sent_at: float, confirmed_at: float | None = None) -> None:
        self.tokens[instance_id] = token
        self.deadlines[instance_id] = sent_at + self.ttl - self.margin
        self.confirmed[instance_id] = sent_at if confirmed_at is None else confirmed_at

    def renewed(self, held: dict[str, int], sent_at: float) -> list[str]:
        """Apply a renewal answer; returns the instances this node lost (taken over or expired).

        A lease acquired while the renewal was in flight is not judged by it (the renewal's statement
        may have run before the acquire committed); its own deadline stands."""
        judged = [i for i in self.tokens if self.confirmed.get(i, sent_at) < sent_at]
        lost = [i for i in judged if held.get(i) != self.tokens[i]]
        for i in lost:
            self.drop(i)
        for i in judged:
            if i in self.tokens:
                self.deadlines[i] = sent_at + self.ttl - self.margin
        return lost

    def expired(self, now: float) -> list[str]:
        return [i for i, d in self.deadlines.items() if now >= d]

    def holds(self, instance_id: str, now: float) -> bool:
        deadline = self.deadlines.get(instance_id)
        return deadline is not None and now < deadline

    def drop(self, instance_id: str) -> None:
        self.tokens.pop(instance_id, None)
        self.deadlines.pop(instance_id, None)
        self.confirmed.pop(instance_id, None)

    def next_deadline(self) -> float | None:
        return min(self.deadlines.values(), default=None)


def fair_share(total: int, live_nodes: int) -> int:
    """How many instances one node should own: ceil(total / nodes)."""
    return math.ceil(total / max(1, live_nodes))


class Fence:
    """What one instance's runtime asks before it writes: does this node still hold the lease?"""

    def __init__(self, node: ClusterNode, instance_id: str) -> None:
        self.node = node
        self.instance_id = instance_id

    def holds(self) -> bool:
        return self.node.book.holds(self.instance_id, self.node.now())

    @property
    def token(self) -> int | None:
        return self.node.book.tokens.get(self.instance_id)

    async def claim(self) -> bool:
        """Take (or keep) the lease before starting an engine; False if another node holds it."""
        return await self.node.claim(self.instance_id)

    async def write(self, values: dict[str, Any]) -> bool:
        token = self.token
        if token is None or not self.holds():
            return False
        return await self.node.repo.update_instance_fenced(self.instance_id, self.node.node_id, token, values)


# Hooks into the instance manager (kept as callables so this module does not import it).
Takeover = Callable[[str], Awaitable[None]]  # resume this instance from stored creds
Lost = Callable[[str], Awaitable[None]]  # close this instance's socket now, write nothing


class ClusterNode:
    """The lease keeper of one node: renews, fences, takes over, hands over."""

    def __init__(self, repo: LeaseRepo, *, node_id: str | None = None, url: str | None = None,
                 ttl: float = DEFAULT_LEASE_SECONDS, margin: float | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0:
            raise ValueError("lease ttl must be positive")
        # `ttl` (EVOLINK_LEASE_SECONDS) is the takeover promise: a dead node's instances are taken within
        # it. The database lease is 2/3 of it, and nodes scan every third of that, so expiry + one scan
        # (+ the login) fits: worst case about 0.9 x ttl.
        self.takeover_within = ttl
        ttl = ttl * 2 / 3
        self.repo = repo
        self.node_id = node_id or default_node_id()
        self.url = url
        self.ttl = ttl
        self.interval = ttl / 3
        self.node_ttl = 2 * self.interval  # a node that missed two heartbeats is not counted
        self.book = LeaseBook(ttl, ttl / 5 if margin is None else margin)
        self.now = now
        self._takeover: Takeover | None = None
        self._movable: Callable[[str], bool] = lambda _id: True
        self._lost: Lost | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    def bind(self, takeover: Takeover, lost: Lost, movable: Callable[[str], bool] | None = None) -> None:
        """`movable(instance_id)`: may rebalancing move it now (open, not in the middle of a link)?"""
        self._takeover, self._lost = takeover, lost
        if movable is not None:
            self._movable = movable

    def fence(self, instance_id: str) -> Fence:
        return Fence(self, instance_id)

    @property
    def owned(self) -> list[str]:
        return list(self.book.tokens)

    @property
    def lease(self) -> float:
        """Seconds a lease lives on the database after each renewal."""
        return self.ttl

    async def claim(self, instance_id: str) -> bool:
        if self._stopping:
            return False
        sent = self.now()
        token = await self.repo.acquire(instance_id, self.node_id, self.ttl)
        if token is None:
            return False
        self.book.acquired(instance_id, token, sent, self.now())
        return True

    async def owner(self, instance_id: str) -> tuple[str, str | None, bool] | None:
        """(node id, url, alive) of another node holding a live lease on the instance, else None.
        `alive`: the node's heartbeat is recent (a paused or dead node's lease may still be live)."""
        lease = (await self.repo.leases()).get(instance_id)
        if lease is None or not lease.live or lease.owner == self.node_id:
            return None
        for node in await self.repo.nodes(self.node_ttl):
            if node.node_id == lease.owner:
                return node.node_id, node.url, node.live
        return lease.owner, None, False

    async def node_alive(self, node_id: str) -> bool:
        return any(n.node_id == node_id and n.live for n in await self.repo.nodes(self.node_ttl))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"cluster-{self.node_id}")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, close_all: Callable[[], Awaitable[None]]) -> None:
        """Graceful stop: close every socket, then expire this node's leases so others take them now."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await close_all()
        try:
            await self.repo.release(self.node_id)
            await self.repo.forget_node(self.node_id)
        except Exception:
            log.exception("could not release leases; they expire within the lease time")
        self.book.tokens.clear()
        self.book.deadlines.clear()
        self.book.confirmed.clear()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster tick failed", extra={"node": self.node_id})
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._sleep_for())

    def _sleep_for(self) -> float:
        wait = self.interval
        deadline = self.book.next_deadline()
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - self.now()))
        return wait

    async def tick(self) -> None:
        """One round: fence what expired locally, renew, heartbeat, take over a fair share."""
        await self._fence_expired()
        sent = self.now()
        try:
            held = await asyncio.wait_for(self.repo.renew(self.node_id, self.ttl), self._renew_timeout())
        except (TimeoutError, OSError, Exception) as exc:
            log.warning("lease renewal failed: %s", exc, extra={"node": self.node_id})
            await self._fence_expired()
            return
        for instance_id in self.book.renewed(held, sent):
            await self._lose(instance_id, "taken over by another node")
        await self.repo.heartbeat(self.node_id, self.url)
        if not self._stopping:
            await self._take_over()

    def _renew_timeout(self) -> float:
        deadline = self.book.next_deadline()
        if deadline is None:
            return self.interval
        return max(0.05, min(self.interval, deadline - self.now()))

    async def _fence_expired(self) -> None:
        for instance_id in self.book.expired(self.now()):
            await self._lose(instance_id, "lease not renewed in time")

    async def _lose(self, instance_id: str, why: str) -> None:
        self.book.drop(instance_id)
        log.warning("lease lost: %s", why, extra={"node": self.node_id, "instance_id": instance_id})
        if self._lost is not None:
            try:
                await self._lost(instance_id)
            except Exception:
                log.exception("closing a lost instance failed", extra={"instance_id": instance_id})

    async def _take_over(self) -> None:
        """Claim free leases up to the fair share; hand over the excess when another node is below it."""
        free = await self.repo.unowned()
        nodes = [n for n in await self.repo.nodes(self.node_ttl) if n.live]
        leases = await self.repo.leases()
        live = [lease for lease in leases.values() if lease.live]
        share = fair_share(len(live) + len(free), len(nodes))
        room = share - len(self.book.tokens)
        if self._takeover is not None:
            for instance_id in free[:max(0, room)]:
                if not await self.claim(instance_id):
                    continue
                log.info("taking over instance", extra={"node": self.node_id, "instance_id": instance_id})
                try:
                    await self._takeover(instance_id)
                except Exception:
                    log.exception("takeover failed", extra={"instance_id": instance_id})
        if free:
            return  # rebalance only once nothing is waiting for an owner
        counts = Counter(lease.owner for lease in live)
        if not any(counts.get(n.node_id, 0) < share for n in nodes if n.node_id != self.node_id):
            return
        movable = [i for i in self.book.tokens if self._movable(i)]  # never a link in progress
        for instance_id in movable[:max(0, len(self.book.tokens) - share)]:
            await self._hand_over(instance_id)

    async def _hand_over(self, instance_id: str) -> None:
        """Rebalancing: close the instance here and free its lease; a node below its share takes it over
        from the stored creds (the link drops once, for the few seconds of a login)."""
        log.info("handing instance over (rebalancing)", extra={"node": self.node_id, "instance_id": instance_id})
        self.book.drop(instance_id)
        if self._lost is not None:
            try:
                await self._lost(instance_id)
            except Exception:
                log.exception("closing a handed-over instance failed", extra={"instance_id": instance_id})
        await self.repo.release(self.node_id, instance_id)
