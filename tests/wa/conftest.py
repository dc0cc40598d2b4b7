"""Fixtures for engine ↔ sandbox tests: an in-process sandbox and engines closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from wa_helpers import PHONE, EngineFactory, Recorder, engine_config

from evolink.clock.base import Clock
from evolink.sandbox.server import Sandbox
from evolink.wa.creds import CredsStore, MemoryCredsStore
from evolink.wa.engine import Engine


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(qr_first_ttl=2.0, qr_next_ttl=1.0, link_timeout=5.0) as sb:
        sb.create_phone(PHONE)
        yield sb


@pytest.fixture
async def make_engine() -> AsyncIterator[EngineFactory]:
    engines: list[Engine] = []

    def factory(sb: Sandbox, store: CredsStore | None = None, clock: Clock | None = None,
                **overrides: Any) -> tuple[Engine, Recorder]:
        message_store = overrides.pop("message_store", None)
        engine = Engine(engine_config(sb, **overrides), store or MemoryCredsStore(), clock,
                        message_store=message_store)
        engines.append(engine)
        return engine, Recorder(engine)

    yield factory
    for engine in engines:
        await engine.close()


