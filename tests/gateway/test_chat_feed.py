"""ChatFeed: message records reach ChatBook in publish order, other events are ignored, a failure is
logged and the next record still applies, and the queue is bounded."""

from __future__ import annotations

from typing import Any

import pytest

from evolink.gateway import chat_feed
from evolink.gateway.chat_feed import ChatFeed
from evolink.gateway.webhooks import InstanceRef

REF = InstanceRef("a", "iid", "T")


class Book:
    def __init__(self, fail_on: str | None = None) -> None:
        self.seen: list[str] = []
        self.fail_on = fail_on

    async def observe_update(self, ref: InstanceRef, update: dict[str, Any]) -> None:
        self.seen.append("update:" + update["key"]["id"])

    async def observe(self, ref: InstanceRef, record: dict[str, Any]) -> None:
        if record["key"]["id"] == self.fail_on:
            raise RuntimeError("database down")
        self.seen.append(record["key"]["id"])


def rec(mid: str) -> dict[str, Any]:
    return {"key": {"id": mid, "remoteJid": "1@s.whatsapp.net", "fromMe": False}}


async def test_only_message_records_in_publish_order() -> None:
    book = Book()
    feed = ChatFeed(book)  # type: ignore[arg-type]
    feed.start()
    for i, event in enumerate(["messages.upsert", "send.message", "connection.update", "messages.upsert",
                               "messages.update", "send.message"]):
        feed.listener(REF, event, rec(str(i)), "now")
    feed.listener(REF, "messages.upsert", ["not", "a", "record"], "now")
    await feed.drain()
    assert book.seen == ["0", "1", "3", "update:4", "5"]
    await feed.stop()


async def test_a_failing_record_does_not_stop_the_feed() -> None:
    book = Book(fail_on="1")
    feed = ChatFeed(book)  # type: ignore[arg-type]
    feed.start()
    for i in range(3):
        feed.listener(REF, "messages.upsert", rec(str(i)), "now")
    await feed.drain()
    assert book.seen == ["0", "2"]
    await feed.stop()


async def test_queue_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_feed, "MAX_QUEUED", 3)
    book = Book()
    feed = ChatFeed(book)  # type: ignore[arg-type]
    for i in range(5):  # not started: nothing drains
        feed.listener(REF, "messages.upsert", rec(str(i)), "now")
    assert feed.dropped == 2
    feed.start()
    await feed.drain()
    assert book.seen == ["0", "1", "2"]
    await feed.stop()
