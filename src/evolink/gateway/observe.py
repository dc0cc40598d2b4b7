"""Hooks into the clock guard (link policy) and the metrics module, kept behind small functions.

The gateway depends only on these names; the clock guard's policy object is adapted in `api.app`.
A failing metrics call is logged, never raised into the linking path.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from evolink import metrics

log = logging.getLogger("evolink.gateway")


@dataclass(frozen=True, slots=True)
class LinkRefusal:
    """The clock guard refused linking; `message` says why and how to fix it."""

    message: str
    clock: dict[str, Any] = field(default_factory=dict)


LinkGuard = Callable[[str], Awaitable[LinkRefusal | None]]
"""Called with the link method ("code" | "qr") before a link starts; None = go ahead."""


async def allow_all(_method: str) -> LinkRefusal | None:
    return None


def _safely(hook: Callable[..., Any], *args: Any) -> None:
    try:
        hook(*args)
    except Exception:  # metrics must never break linking
        log.exception("metrics hook failed")


def record_pairing_attempt(method: str, result: str, duration: float | None = None) -> None:
    """Count one finished pairing attempt (result: success | failed | expired | superseded).

    `refused_clock` is counted by the clock guard when it refuses, not here."""
    _safely(metrics.record_pairing_attempt, method, result, duration)


def publish_instance_states(states: dict[str, str]) -> None:
    """Snapshot for `evolink_instances{state}` and Evolution's per-instance gauges."""
    _safely(metrics.set_instance_states, states)


def set_environment_info(version: str, client_name: str, server_url: str) -> None:
    _safely(metrics.set_environment_info, version, client_name, server_url)


def set_cluster_node(node_id: str) -> None:
    """Cluster mode: `evolink_cluster_node_info{node}`; the instance gauges then cover only the
    instances this node owns, so every instance is reported by exactly one node."""
    _safely(metrics.set_cluster_node, node_id)
