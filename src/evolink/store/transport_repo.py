"""Data access for the per-instance event transport settings (one short transaction per call)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from evolink.store.db import Database
from evolink.store.models import utcnow
from evolink.store.transport_models import EventTransportSetting


class TransportSettingsRepo:
    def __init__(self, db: Database, now: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self._now = now

    async def get(self, instance_id: str, transport: str) -> EventTransportSetting | None:
        async with self.db.sessions() as s:
            q = select(EventTransportSetting).where(EventTransportSetting.instance_id == instance_id,
                                                    EventTransportSetting.transport == transport)
            return (await s.execute(q)).scalars().first()

    async def all_for(self, instance_id: str) -> dict[str, EventTransportSetting]:
        """{transport: row} of one instance (one query per published event)."""
        async with self.db.sessions() as s:
            q = select(EventTransportSetting).where(EventTransportSetting.instance_id == instance_id)
            return {row.transport: row for row in (await s.execute(q)).scalars()}

    async def upsert(self, instance_id: str, transport: str, *, enabled: bool,
                     events: list[str]) -> EventTransportSetting:
        now = self._now()
        async with self.db.sessions.begin() as s:
            q = select(EventTransportSetting).where(EventTransportSetting.instance_id == instance_id,
                                                    EventTransportSetting.transport == transport)
            row = (await s.execute(q)).scalars().first()
            if row is None:
                row = EventTransportSetting(instance_id=instance_id, transport=transport, enabled=enabled,
                                            events=list(events), created_at=now, updated_at=now)
                s.add(row)
            else:
                row.enabled = enabled
                row.events = list(events)
                row.updated_at = now
            await s.flush()
        return row
