from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from clock_helpers import Responders


@pytest.fixture
async def responders() -> AsyncIterator[Responders]:
    r = Responders()
    yield r
    r.close()
