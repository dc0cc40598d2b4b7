"""A gateway on a real loopback port (uvicorn), for streaming (SSE) clients, browsers and CLIs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from gw_helpers import GLOBAL_KEY

from evolink.api.apikey import ApiKey
from evolink.api.app import create_app
from evolink.api.settings import Settings


@contextlib.asynccontextmanager
async def served(settings: Settings, **kwargs: Any) -> AsyncIterator[tuple[str, Any]]:
    """(base URL, app) of the gateway served by uvicorn on 127.0.0.1, port chosen by the kernel."""
    kwargs.setdefault("clock_guard", None)
    kwargs.setdefault("api_key", ApiKey(GLOBAL_KEY, "env"))
    app = create_app(settings, **kwargs)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)  # uvicorn exposes no readiness event
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class SseReader:
    """Reads `data:` events of one open text/event-stream response, with bounded waits."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()
        self.named: list[tuple[str, Any]] = []

    async def next_event(self, within: float = 10.0) -> tuple[str, Any]:
        async def read() -> tuple[str, Any]:
            name, data = "message", None
            async for line in self._lines:
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:])
                elif line == "" and data is not None:
                    return name, data
            raise EOFError("stream ended")

        event = await asyncio.wait_for(read(), within)
        self.named.append(event)
        return event

    async def until(self, predicate: Any, within: float = 10.0) -> Any:
        async def loop() -> Any:
            while True:
                name, data = await self.next_event(within)
                if predicate(name, data):
                    return data

        return await asyncio.wait_for(loop(), within)
