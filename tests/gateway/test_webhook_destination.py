"""`webhookByEvents` and the `destination` field, row by row, as Evolution 2.3.7's webhook controller
fills them (one body for the instance and the global webhook): the instance webhook posts to
`url[/kebab]` with `destination` = its URL; the global webhook posts to `GLOBAL_URL[/kebab]` (suffix
only with `WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS`) and its `destination` is the instance's webhook URL
when the instance has one, else `GLOBAL_URL/kebab` (always suffixed)."""

from __future__ import annotations

import uuid

import pytest
from test_webhooks import _publisher

from evolink.gateway import GlobalWebhook, WebhookTarget
from evolink.gateway.webhooks import InstanceRef
from evolink.store import Store

INST, GLOB = "http://127.0.0.1:1/hook", "http://127.0.0.1:2/g"
NO_INSTANCE_HOOK = None
HOOK = WebhookTarget(url=INST, by_events=True, headers=None, events=[])
HOOK_PLAIN = WebhookTarget(url=INST, by_events=False, headers=None, events=[])
HOOK_OFF = WebhookTarget(url=INST, by_events=True, headers=None, events=[], enabled=False)
HOOK_OTHER_EVENTS = WebhookTarget(url=INST, by_events=False, headers=None, events=["CONNECTION_UPDATE"])
SUFFIX = "messages-upsert"

# (instance webhook, global by-events) -> [(posted URL, body destination)] for one messages.upsert
ROWS = [
    (NO_INSTANCE_HOOK, False, [(GLOB, f"{GLOB}/{SUFFIX}")]),
    (NO_INSTANCE_HOOK, True, [(f"{GLOB}/{SUFFIX}", f"{GLOB}/{SUFFIX}")]),
    (HOOK, False, [(f"{INST}/{SUFFIX}", INST), (GLOB, INST)]),
    (HOOK_PLAIN, True, [(INST, INST), (f"{GLOB}/{SUFFIX}", INST)]),
    (HOOK_OFF, False, [(GLOB, INST)]),  # a disabled instance webhook still names the destination
    (HOOK_OTHER_EVENTS, False, [(GLOB, INST)]),  # so does one that does not want this event
]


@pytest.mark.parametrize(("hook", "global_by_events", "want"), ROWS)
async def test_message_event_urls_and_destination(store: Store, hook: WebhookTarget | None, global_by_events: bool,
                                                  want: list[tuple[str, str]]) -> None:
    glob = GlobalWebhook(enabled=True, url=GLOB, by_events=global_by_events, events={"MESSAGES_UPSERT": True})
    pub = await _publisher(store, hook, glob)
    ref = InstanceRef("i1", str(uuid.uuid4()), "TOK")
    assert await pub.publish(ref, "messages.upsert", {"key": {"id": "X"}}) == len(want)
    rows = await store.due_heads(now=1.0)
    assert sorted((r.url, r.payload["destination"]) for r in rows) == sorted(want)
