"""Cluster mode core: lease book (pure), and two nodes in one process sharing PostgreSQL (fake engines):
one owner at a time, takeover from stored creds without a new link, fencing of the stale owner,
graceful hand-over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gw_fakes import FakeHub
from gw_helpers import Receiver, close_test_database, open_test_database

from evolink.clock.base import SystemClock
from evolink.gateway.cluster import ClusterNode, LeaseBook, fair_share
from evolink.gateway.manager import CreateRequest, InstanceManager
from evolink.gateway.runtime import RuntimeOptions
from evolink.gateway.webhooks import EventPublisher, GlobalWebhook
from evolink.store import CredsCipher, Database, Store
from evolink.store.leases import LeaseRepo

# --- the lease book (pure) ---------------------------------------------------------------------


def test_book_deadline_is_before_the_database_expiry() -> None:
    book = LeaseBook(ttl=15, margin=3)
    book.acquired("a", 1, sent_at=100.0)
    assert book.holds("a", 111.9) and not book.holds("a", 112.0)
    assert book.expired(112.0) == ["a"] and book.next_deadline() == 112.0


def test_book_renewal_extends_from_the_send_time_and_reports_losses() -> None:
    book = LeaseBook(ttl=15, margin=3)
    book.acquired("a", 1, 100.0)
    book.acquired("b", 4, 100.0)
    lost = book.renewed({"a": 1, "b": 5}, sent_at=105.0)  # b was taken over (token moved on)
    assert lost == ["b"] and book.tokens == {"a": 1} and book.deadlines == {"a": 117.0}
    assert book.renewed({}, 110.0) == ["a"] and not book.tokens


def test_book_does_not_judge_a_lease_acquired_during_the_renewal() -> None:
    book = LeaseBook(ttl=15, margin=3)
    book.acquired("a", 1, 100.0, confirmed_at=100.1)
    book.acquired("b", 1, 104.9, confirmed_at=105.2)  # claimed while the renewal sent at 105.0 ran
    assert book.renewed({"a": 1}, sent_at=105.0) == []  # b was not in that renewal's snapshot
    assert book.tokens == {"a": 1, "b": 1} and book.deadlines["b"] == 104.9 + 12
    assert book.renewed({"a": 1}, sent_at=110.0) == ["b"]  # the next renewal judges it


def test_fair_share() -> None:
    assert fair_share(60, 3) == 20 and fair_share(61, 3) == 21 and fair_share(5, 0) == 5


# --- two nodes, one database -------------------------------------------------------------------

pg = pytest.mark.postgres


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database, schema = await open_test_database("postgresql", tmp_path)
    try:
        yield database
    finally:
        await close_test_database(database, schema)


class Node:
    def __init__(self, db: Database, name: str, ttl: float) -> None:
        self.store = Store(db, CredsCipher("cluster-test"))
        self.hub = FakeHub()
        self.cluster = ClusterNode(LeaseRepo(db), node_id=name, url=None, ttl=ttl)
        clock = SystemClock()
        async def no_webhook(_id: str) -> None:
            return None

        publisher = EventPublisher(self.store, clock, global_webhook=GlobalWebhook(), server_url=None,
                                   expose_apikey=False, lookup_webhook=no_webhook)
        self.manager = InstanceManager(store=self.store, publisher=publisher, clock=clock,
                                       engine_factory=self.hub.factory, options=RuntimeOptions(connect_wait=3),
                                       client_name="evolution", cluster=self.cluster)

    async def until(self, predicate: object, within: float = 10.0) -> None:
        """Tick this node's keeper (as its loop would) until `predicate()` holds."""
        assert callable(predicate)

        async def loop() -> None:
            while not predicate():
                await self.cluster.tick()
                await asyncio.sleep(0.05)  # leases expire on the database clock; ticking is the loop

        await asyncio.wait_for(loop(), within)


async def _open(node: Node, name: str) -> str:
    row, rt = await node.manager.create(CreateRequest(name=name))
    await rt.connect()
    await node.hub.latest(name).link()
    assert await rt._wait(lambda: rt.state == "open", 5)
    await rt.settle()
    return row.id


@pg
async def test_takeover_without_new_link_and_the_stale_owner_is_fenced(db: Database) -> None:
    a, b = Node(db, "node-a", ttl=3.0), Node(db, "node-b", ttl=3.0)
    iid = await _open(a, "i1")
    assert a.cluster.owned == [iid]
    await a.cluster.tick()  # a fresh renewal: a holds the lease for the next 2 s
    # b cannot connect an instance a holds
    rt_b = await b.manager.get("i1")
    assert rt_b is not None
    answer = await rt_b.connect()
    assert answer["error"] and "another gateway node" in answer["message"] and b.hub.starts == 0
    b.manager.runtimes.pop("i1")

    # a stops renewing (paused / partitioned): b takes the instance over from the stored creds
    await b.until(lambda: b.cluster.owned == [iid])
    taken = b.manager.runtimes["i1"]
    assert await taken._wait(lambda: taken.state == "open", 5)
    assert b.hub.starts == 1 and b.hub.latest("i1").companion_hellos == 0  # logged in, not linked
    assert (await b.store.get_instance("i1")).connection_status == "open"  # type: ignore[union-attr]

    # a wakes up: its first tick closes the socket, and nothing it says is written any more
    old_engine = a.hub.latest("i1")
    await a.cluster.tick()
    assert old_engine.closed and "i1" not in a.manager.runtimes and a.cluster.owned == []
    stale = a.manager.cluster.fence(iid)  # type: ignore[union-attr]
    assert not stale.holds() and not await stale.write({"connection_status": "close"})
    assert (await a.store.get_instance("i1")).connection_status == "open"  # type: ignore[union-attr]
    await b.manager.shutdown()
    await a.manager.shutdown()


@pg
async def test_graceful_stop_hands_over_at_once(db: Database) -> None:
    a, b = Node(db, "node-a", ttl=30.0), Node(db, "node-b", ttl=30.0)
    ids = [await _open(a, f"g{i}") for i in range(3)]
    await b.cluster.tick()
    assert b.cluster.owned == []  # 30 s leases, all held by a
    await a.manager.shutdown()
    assert all(e.closed for engines in a.hub.engines.values() for e in engines)
    await b.until(lambda: sorted(b.cluster.owned) == sorted(ids), within=5)  # far less than the 30 s lease
    for i in range(3):
        rt = b.manager.runtimes[f"g{i}"]
        assert await rt._wait(lambda rt=rt: rt.state == "open", 5)
    await b.manager.shutdown()


@pg
async def test_a_new_node_takes_only_its_fair_share(db: Database) -> None:
    a, b = Node(db, "node-a", ttl=30.0), Node(db, "node-b", ttl=30.0)
    for i in range(4):
        await _open(a, f"f{i}")
    await a.manager.shutdown()  # four free instances, two live nodes
    await a.cluster.repo.heartbeat("node-a", None)  # a is back (restarted): counted as live
    a2 = Node(db, "node-a", ttl=30.0)
    await b.cluster.tick()
    assert len(b.cluster.owned) == 2  # ceil(4 / 2)
    await a2.cluster.tick()
    assert len(a2.cluster.owned) == 2
    await asyncio.gather(a2.manager.shutdown(), b.manager.shutdown())


@pg
async def test_two_nodes_deliver_each_webhook_once_in_lane_order(db: Database, receiver: Receiver) -> None:
    from evolink.gateway.webhooks import DeliveryWorker, RetryPolicy
    from evolink.store import OutboxItem

    stores = [Store(db, CredsCipher("x")), Store(db, CredsCipher("x"))]
    policy = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.1, jitter=0)
    wakes = [asyncio.Event(), asyncio.Event()]
    workers = [DeliveryWorker(s, policy, w, claim_for=30.0) for s, w in zip(stores, wakes, strict=True)]
    items = [OutboxItem(lane=f"i{lane}|{receiver.url}", instance_name=f"i{lane}", event="e", url=receiver.url,
                        payload={"lane": lane, "n": n}) for n in range(10) for lane in range(6)]
    await stores[0].enqueue(items)
    for w in workers:
        w.start()
    try:
        for w in wakes:
            w.set()
        await receiver.wait_for(lambda: len(receiver.received) >= len(items), 20)
    finally:
        for w in workers:
            await w.stop()  # lets deliveries on the wire finish and record their outcome
    assert (await stores[0].outbox_counts()) == {"delivered": len(items)}
    seen = [(r.body["lane"], r.body["n"]) for r in receiver.received]
    assert len(seen) == len(set(seen)) == len(items)  # each exactly once
    for lane in range(6):
        assert [n for lane_, n in seen if lane_ == lane] == list(range(10))  # in order per lane
    assert all(w.stats["delivered"] for w in workers)  # both nodes took part


@pg
async def test_rebalancing_moves_the_excess_once(db: Database) -> None:
    a, b = Node(db, "node-a", ttl=30.0), Node(db, "node-b", ttl=30.0)
    for i in range(4):
        await _open(a, f"r{i}")
    await a.cluster.tick()
    assert len(a.cluster.owned) == 4
    await b.cluster.tick()  # b joins (heartbeat); nothing is free, it takes nothing yet
    assert b.cluster.owned == []
    await a.cluster.tick()  # a sees b below its share: hands two over
    assert len(a.cluster.owned) == 2
    moved = [n for n, rt in a.hub.engines.items() if rt[-1].closed]
    assert len(moved) == 2
    await b.cluster.tick()
    assert len(b.cluster.owned) == 2
    for name in moved:
        rt = b.manager.runtimes[name]
        assert await rt._wait(lambda rt=rt: rt.state == "open", 5)
        assert b.hub.latest(name).companion_hellos == 0  # logged in from creds, not linked
    for _ in range(2):  # stable: nothing moves again
        await a.cluster.tick()
        await b.cluster.tick()
    assert len(a.cluster.owned) == len(b.cluster.owned) == 2 and b.hub.starts == 2
    await asyncio.gather(a.manager.shutdown(), b.manager.shutdown())


@pg
async def test_rebalancing_never_moves_a_link_in_progress(db: Database) -> None:
    a, b = Node(db, "node-a", ttl=30.0), Node(db, "node-b", ttl=30.0)
    _row, linking = await a.manager.create(CreateRequest(name="l1"))  # first in a's book
    answer = await linking.connect("15550004444")
    assert answer.get("pairingCode"), answer  # the user is typing this code on the phone now
    await _open(a, "o1")
    await _open(a, "o2")
    await a.cluster.tick()
    await b.cluster.tick()  # b joins below its share (ceil(3 / 2) = 2)
    await a.cluster.tick()
    assert len(a.cluster.owned) == 2 and linking.instance_id in a.cluster.owned
    assert not a.hub.latest("l1").closed and linking.qr.pairing_code == answer["pairingCode"]
    await b.cluster.tick()
    assert len(b.cluster.owned) == 1
    await asyncio.gather(a.manager.shutdown(), b.manager.shutdown())


@pg
async def test_only_the_owner_reports_an_instance_state(db: Database) -> None:
    """Created on a, connected through b: a keeps a closed runtime for it, but neither its metrics
    snapshot (`states`) nor its live-state lookups (`running`, used by fetchInstances) report it."""
    a, b = Node(db, "node-a", ttl=3.0), Node(db, "node-b", ttl=3.0)
    row, _rt_a = await a.manager.create(CreateRequest(name="i1"))
    assert a.manager.states() == {} and a.manager.running("i1") is None  # nobody owns it yet
    rt_b = await b.manager.get("i1")
    assert rt_b is not None
    await rt_b.connect()
    await b.hub.latest("i1").link()
    assert await rt_b._wait(lambda: rt_b.state == "open", 5)
    await rt_b.settle()
    assert b.cluster.owned == [row.id] and b.manager.running("i1") is rt_b
    assert b.manager.states() == {"i1": "open"}
    assert "i1" in a.manager.runtimes  # the stale closed runtime is still loaded on a …
    assert a.manager.states() == {} and a.manager.running("i1") is None  # … and reported by no one
    await b.manager.shutdown()
    await a.manager.shutdown()
