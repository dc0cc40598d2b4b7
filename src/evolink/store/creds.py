"""The engine's `CredsStore`, backed by the `sessions` table (sealed with EVOLINK_SECRET_KEY when set)."""

from __future__ import annotations

from typing import Any

from evolink.store.repo import Store


class SqlCredsStore:
    """Creds of one instance. The engine calls load/save/clear; all three are short transactions."""

    def __init__(self, store: Store, instance_id: str) -> None:
        self._store = store
        self.instance_id = instance_id

    async def load(self) -> dict[str, Any] | None:
        return await self._store.load_creds(self.instance_id)

    async def save(self, creds: dict[str, Any]) -> None:
        await self._store.save_creds(self.instance_id, creds)

    async def clear(self) -> None:
        await self._store.clear_creds(self.instance_id)
