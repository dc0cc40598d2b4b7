"""The engine's `CredsStore` (evolink.wa.creds), backed by the `sessions` table through `Store`.

It lives in the gateway, not in evolink.store, because it knows the engine's `Creds` type and the
store must not import evolink.wa. Creds are sealed at rest with the installation's key
(see evolink.store.creds_key)."""

from __future__ import annotations

from evolink.store.repo import Store
from evolink.wa.creds import Creds


class SqlCredsStore:
    """Creds of one instance; load/save/clear are each one short transaction."""

    def __init__(self, store: Store, instance_id: str) -> None:
        self._store = store
        self.instance_id = instance_id

    async def load(self) -> Creds | None:
        data = await self._store.load_creds(self.instance_id)
        return None if data is None else Creds.from_dict(data)

    async def save(self, creds: Creds) -> None:
        await self._store.save_creds(self.instance_id, creds.to_dict())

    async def clear(self) -> None:
        await self._store.clear_creds(self.instance_id)

    async def has_registered(self) -> bool:
        creds = await self.load()
        return creds is not None and creds.registered
