"""Hooks into the clock guard (link policy) and the metrics module, kept behind small functions.

The gateway depends only on these names; the clock guard's policy object is adapted in `api.app`.
Metric helpers are looked up lazily so the gateway keeps working in builds without `evolink.metrics`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

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


def _metric(name: str) -> Callable[..., Any] | None:
    try:
        module = importlib.import_module("evolink.metrics")
    except ImportError:
        return None
    fn = getattr(module, name, None)
    return fn if callable(fn) else None


def record_pairing_attempt(method: str, result: str, duration: float | None = None) -> None:
    """Count one finished pairing attempt (result: success | failed | expired | superseded).

    `refused_clock` is counted by the clock guard when it refuses, not here."""
    fn = _metric("record_pairing_attempt")
    if fn is None:
        return
    try:
        fn(method, result, duration)
    except Exception:  # metrics must never break linking
        log.exception("metrics hook failed")


def publish_instance_states(states: dict[str, str]) -> None:
    """Snapshot for `evolink_instances{state}` and Evolution's per-instance gauges."""
    fn = _metric("set_instance_states")
    if fn is None:
        return
    try:
        fn(states)
    except Exception:
        log.exception("metrics hook failed")


def set_environment_info(version: str, client_name: str, server_url: str) -> None:
    fn = _metric("set_environment_info")
    if fn is None:
        return
    try:
        fn(version, client_name, server_url)
    except Exception:
        log.exception("metrics hook failed")
