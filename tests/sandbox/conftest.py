from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sandbox_baileys import BaileysDriver

from evolink.sandbox.server import Sandbox


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start() as sb:
        yield sb


@pytest.fixture
async def admin(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.admin_url, timeout=30) as client:
        yield client


@pytest.fixture
async def drivers() -> AsyncIterator[Callable[..., Awaitable[BaileysDriver]]]:
    """Factory for Baileys driver processes; all are killed at the end of the test."""
    started: list[BaileysDriver] = []

    async def start(**kwargs: Any) -> BaileysDriver:
        driver = await BaileysDriver.start(**kwargs)
        started.append(driver)
        return driver

    yield start
    for driver in started:
        await driver.stop()
