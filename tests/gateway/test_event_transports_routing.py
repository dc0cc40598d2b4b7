"""Issue 14: which transports get an event and under which names (Evolution 2.3.7's naming), row by row."""

from __future__ import annotations

import pytest

from evolink.gateway.event_transports import (
    Destination,
    InstanceTransport,
    Scope,
    Transport,
    TransportConfig,
    naming_problem,
    parse_url,
    route,
)

ALL_ON = TransportConfig(websocket=True, websocket_global=True, rabbitmq=True, rabbitmq_global=True,
                         rabbitmq_exchange="evo_x", rabbitmq_prefix="pre", rabbitmq_events={"QRCODE_UPDATED": True},
                         nats=True, nats_global=True, nats_prefix=None, nats_events={"QRCODE_UPDATED": True})
ROWS = {t.value: InstanceTransport(True, ("QRCODE_UPDATED", "CONNECTION_UPDATE")) for t in Transport}


def _addr(dests: list[Destination]) -> list[tuple[str, str, dict[str, str]]]:
    return [(d.transport.value, d.scope.value, d.address) for d in dests]


def test_every_destination_named_as_evolution_names_it() -> None:
    got = _addr(route(ALL_ON, "shop", "qrcode.updated", "QRCODE_UPDATED", ROWS))
    assert got == [
        ("websocket", "global", {"namespace": "/"}),
        ("websocket", "instance", {"namespace": "/shop"}),
        ("rabbitmq", "instance", {"exchange": "shop", "queue": "shop.qrcode.updated", "bind": "qrcode.updated",
                                  "key": "qrcode.updated"}),
        ("rabbitmq", "global", {"exchange": "evo_x", "queue": "pre.qrcode.updated", "bind": "qrcode.updated",
                                "key": "qrcode.updated"}),
        ("nats", "instance", {"subject": "shop.qrcode.updated"}),
        ("nats", "global", {"subject": "qrcode.updated"}),
    ]


@pytest.mark.parametrize(("cfg", "rows", "key", "want"), [
    # global flags decide the global destinations; CONNECTION_UPDATE has no RABBITMQ/NATS_EVENTS flag here
    (ALL_ON, {}, "CONNECTION_UPDATE", [("websocket", "global")]),
    # an instance row that does not list the key gets nothing
    (TransportConfig(rabbitmq=True), {"rabbitmq": InstanceTransport(True, ("CONNECTION_UPDATE",))},
     "QRCODE_UPDATED", []),
    # a disabled row gets nothing even when it lists the key
    (TransportConfig(nats=True), {"nats": InstanceTransport(False, ("QRCODE_UPDATED",))}, "QRCODE_UPDATED", []),
    # a transport switched off by env gets nothing, whatever the instance row says
    (TransportConfig(), ROWS, "QRCODE_UPDATED", []),
    # global websocket without WEBSOCKET_GLOBAL_EVENTS: only the instance namespace
    (TransportConfig(websocket=True), ROWS, "QRCODE_UPDATED", [("websocket", "instance")]),
    # evolink's opt-in extension events never go to the global socket
    (ALL_ON, {}, "CLOCK_STEP", []),
    # ... but an instance row that lists one gets it
    (TransportConfig(nats=True), {"nats": InstanceTransport(True, ("CLOCK_STEP",))}, "CLOCK_STEP",
     [("nats", "instance")]),
])
def test_filters(cfg: TransportConfig, rows: dict[str, InstanceTransport], key: str,
                 want: list[tuple[str, str]]) -> None:
    event = key.lower().replace("_", ".")
    got = [(d.transport.value, d.scope.value)
           for d in route(cfg, "shop", event, key, rows, opt_in=frozenset({"CLOCK_STEP"}))]
    assert got == want


def test_global_names_without_prefix_and_with_nats_prefix() -> None:
    cfg = TransportConfig(rabbitmq=True, rabbitmq_global=True, rabbitmq_events={"CONNECTION_UPDATE": True},
                          nats=True, nats_global=True, nats_prefix="evo", nats_events={"CONNECTION_UPDATE": True})
    got = _addr(route(cfg, "a", "connection.update", "CONNECTION_UPDATE", {}))
    assert got == [("rabbitmq", "global", {"exchange": "evolution_exchange", "queue": "connection.update",
                                           "bind": "connection.update", "key": "connection.update"}),
                   ("nats", "global", {"subject": "evo.connection.update"})]


@pytest.mark.parametrize("name", ["shop", "a b/c?d=e&f", "ünï.cödé", "x%2Fy"])
def test_url_round_trip_and_lanes(name: str) -> None:
    [d] = [d for d in route(ALL_ON, name, "qrcode.updated", "QRCODE_UPDATED", ROWS)
           if d.transport is Transport.RABBITMQ and d.scope is Scope.INSTANCE]
    scheme, address = parse_url(d.url)
    assert scheme == "rabbitmq" and address == d.address and address["exchange"] == name
    assert d.lane(name) == f"{name}|rabbitmq:instance"
    assert parse_url("https://example.com/x?y=1") == ("https", {})  # webhook rows are left alone


@pytest.mark.parametrize(("transport", "name", "ok"), [
    (Transport.NATS, "shop", True), (Transport.NATS, "shop.eu", True), (Transport.NATS, "my shop", False),
    (Transport.NATS, "shop*", False), (Transport.NATS, "a>b", False), (Transport.NATS, "a..b", False),
    (Transport.NATS, ".a", False), (Transport.NATS, "a.", False),
    (Transport.RABBITMQ, "x" * 229, True), (Transport.RABBITMQ, "x" * 230, False),
    (Transport.RABBITMQ, "my shop*", True), (Transport.WEBSOCKET, "my shop*", True),
])
def test_instance_names_that_cannot_name_a_destination(transport: Transport, name: str, ok: bool) -> None:
    assert (naming_problem(transport, name) is None) is ok
