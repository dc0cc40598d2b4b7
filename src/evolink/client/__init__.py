"""A typed Python client (sync and async, on httpx) for the Evolution-compatible instance API, with
link flows that retry the way the field asked for. Depends on nothing else in evolink.

    from evolink.client import EvolinkClient

    with EvolinkClient("http://localhost:8080", api_key) as gw:
        gw.create_instance("shop")
        linked = gw.link_by_code("shop", "15550001111", on_code=lambda c: print(c.grouped))
        print("linked as", linked.number)

See docs/client.md.
"""

from evolink.client.aio import AsyncEvolinkClient
from evolink.client.errors import (
    ApiError,
    ClockRefused,
    EvolinkError,
    GatewayUnreachable,
    InstanceNotFound,
    InvalidNumber,
    LinkFailed,
    LinkRefused,
    Unauthorized,
)
from evolink.client.models import Backoff, ConnectAnswer, Linked, PairingCode, QrCode
from evolink.client.sync import EvolinkClient

__all__ = ["ApiError", "AsyncEvolinkClient", "Backoff", "ClockRefused", "ConnectAnswer", "EvolinkClient",
           "EvolinkError", "GatewayUnreachable", "InstanceNotFound", "InvalidNumber", "LinkFailed", "LinkRefused",
           "Linked", "PairingCode", "QrCode", "Unauthorized"]
