"""What the stanza handlers share: the host, the directory, the routing state, and one request.

An iq handler is a plain function ``(Services, IqRequest) -> Node`` (the answer); the handler
tables in ``iq.py`` map ``(xmlns, first child tag)`` to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from evolink.sandbox.directory import Directory
from evolink.sandbox.host import Host
from evolink.sandbox.routing_store import RoutingStore
from evolink.wire.binary import Node


@dataclass(slots=True)
class Services:
    host: Host
    directory: Directory
    routing: RoutingStore
    # Pushed to a device after an answer (e.g. the pre-key low-count notification): (phone, device, node).
    notify: Callable[[str, int, Node], None] = field(default=lambda phone, device, node: None)
    # Queued until acknowledged, and pushed now when online (group notifications): (phone, device, node).
    deliver: Callable[[str, int, Node], None] = field(default=lambda phone, device, node: None)
        # The account's push name (the name its contacts see), by phone: sent as the `notify` attribute of the
    # messages it writes, as WhatsApp does (it is how a companion learns its own name). In memory only.
    push_names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IqRequest:
    """An iq from the logged-in device (phone, device)."""

    iq: Node
    first: Node | None  # first child, or None
    phone: str
    device: int

    @property
    def kind(self) -> str:
        return self.iq.attrs.get("type", "")


IqHandler = Callable[[Services, IqRequest], Node]
