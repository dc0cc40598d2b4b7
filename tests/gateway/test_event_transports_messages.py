"""Issue 14 follow-up (with issue 11's message events): a linked instance (real engine + sandbox)
sends a text through sendText and receives one from a phone; MESSAGES_UPSERT, SEND_MESSAGE,
MESSAGES_UPDATE, CHATS_UPSERT and CONTACTS_UPSERT reach socket.io, RabbitMQ and NATS (the machine's
real servers), per instance and global, with the bodies the webhook got, and each transport's own
`events` filter (per instance) or env flags (global) decide which of them it carries.

The webhook is set with `byEvents` and `base64` on: its URLs end in the kebab event name and, as in
Evolution 2.3.7, `base64` changes nothing for a text (it only adds media bytes)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from chat_helpers import BOB, CAROL, PHONE, sandbox
from event_consumers import Inbox, NatsSubjects, RabbitQueues, SocketListener, need_brokers
from gw_helpers import GLOBAL_KEY, Receiver, create_instance
from test_acceptance import connect, fast_engines, gw_settings, http_gateway

from evolink.gateway.names import event_suffix
from evolink.sandbox.server import Sandbox

__all__ = ["sandbox"]  # the fixture

BOB_JID = f"{BOB}@s.whatsapp.net"
CAROL_JID = f"{CAROL}@s.whatsapp.net"
MESSAGE_KEYS = ("MESSAGES_UPSERT", "SEND_MESSAGE", "MESSAGES_UPDATE")
# Per instance, each transport lists the message events and its own choice of chat/contact events;
# globally, the env flags choose. Every set leaves out something the webhook gets.
LOCAL = {
    "websocket": (*MESSAGE_KEYS, "CHATS_UPSERT", "CONTACTS_UPSERT"),
    "rabbitmq": (*MESSAGE_KEYS, "CHATS_UPSERT"),
    "nats": (*MESSAGE_KEYS, "CONTACTS_UPSERT", "CONTACTS_UPDATE"),
}
GLOBAL_RABBIT = (*MESSAGE_KEYS, "CONTACTS_UPSERT")
GLOBAL_NATS = (*MESSAGE_KEYS, "CHATS_UPSERT", "CHATS_UPDATE")
GLOBAL_WEBHOOK = (*MESSAGE_KEYS, "CONTACTS_UPSERT", "CHATS_UPSERT")
# what the comparisons look at (the global socket also carries the linking events)
WATCHED = ("MESSAGES_UPSERT", "SEND_MESSAGE", "MESSAGES_UPDATE", "CHATS_UPSERT", "CHATS_UPDATE",
           "CONTACTS_UPSERT", "CONTACTS_UPDATE")


def dotted(key: str) -> str:
    return key.lower().replace("_", ".")


def webhook_bodies(receiver: Receiver, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The webhook's bodies of these events, in arrival order, as the transports must carry them."""
    names = {dotted(k) for k in keys}
    return [{k: v for k, v in b.items() if k != "destination"} for b in receiver.events() if b["event"] in names]


def about(jid: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bodies of events about one chat (its JID appears in `data`)."""
    return [b for b in bodies if jid in json.dumps(b["data"])]


def only(bodies: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    names = {dotted(k) for k in keys}
    return [b for b in bodies if b["event"] in names]


async def same_as_webhook(inbox: Inbox, where: str, want: list[dict[str, Any]],
                          keys: tuple[str, ...] | None) -> None:
    """`where` got the webhook's bodies of the watched events, in the same order, and (unless `keys`
    is None) no event outside `keys`. Later events may follow: only the prefix the webhook saw counts."""
    await inbox.wait_for(lambda: len(only(inbox.bodies(where), WATCHED)) >= len(want), 20)
    if keys is not None:
        kinds = {b["event"] for b in inbox.bodies(where)}
        assert kinds <= {dotted(k) for k in keys}, (where, sorted(kinds))
    assert only(inbox.bodies(where), WATCHED)[:len(want)] == want, where


async def test_message_events_on_every_transport_equal_the_webhook_bodies(tmp_path: Path, sandbox: Sandbox,
                                                                          receiver: Receiver) -> None:
    await need_brokers()
    global_hook = Receiver()
    await global_hook.start()
    u = uuid.uuid4().hex[:10]
    name, exchange, prefix = f"em{u}", f"emx{u}", f"emp{u}"
    settings = gw_settings(tmp_path, sandbox, WEBHOOK_GLOBAL_ENABLED=True, WEBHOOK_GLOBAL_URL=global_hook.url,
                           WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS=True, webhook_events=dict.fromkeys(GLOBAL_WEBHOOK, True),
                           WEBSOCKET_ENABLED=True, WEBSOCKET_GLOBAL_EVENTS=True,
                           RABBITMQ_ENABLED=True, RABBITMQ_URI="amqp://guest:guest@127.0.0.1:5672/",
                           RABBITMQ_EXCHANGE_NAME=exchange, RABBITMQ_GLOBAL_ENABLED=True, RABBITMQ_PREFIX_KEY=prefix,
                           rabbitmq_events=dict.fromkeys(GLOBAL_RABBIT, True), NATS_ENABLED=True,
                           NATS_URI="nats://127.0.0.1:4222", NATS_GLOBAL_ENABLED=True, NATS_PREFIX_KEY=prefix,
                           nats_events=dict.fromkeys(GLOBAL_NATS, True))
    rabbit, nats_sub, sock = RabbitQueues(), NatsSubjects(), SocketListener()
    # Evolution's queues ({instance}.{event}, {prefix}.{event}) plus one catch-all queue per exchange
    # ("#"): the catch-all sees every message of the exchange in publish order, and any leak.
    await rabbit.start([(name, f"{name}.{dotted(k)}", dotted(k)) for k in LOCAL["rabbitmq"]]
                       + [(exchange, f"{prefix}.{dotted(k)}", dotted(k)) for k in GLOBAL_RABBIT]
                       + [(name, f"{name}-all", "#"), (exchange, f"{prefix}-all", "#")])
    await nats_sub.start([f"{name}.>", f"{prefix}.>"])
    try:
        async with http_gateway(settings, engine_factory=fast_engines(sandbox)) as base_url:
            await sock.start(base_url, ["/", f"/{name}"], GLOBAL_KEY)
            async with httpx.AsyncClient(base_url=base_url, headers={"apikey": GLOBAL_KEY}, timeout=30) as client:
                await create_instance(client, name, None,
                                      webhook={"url": receiver.url, "enabled": True, "events": [],
                                               "byEvents": True, "base64": True},
                                      **{t: {"events": list(keys)} for t, keys in LOCAL.items()})
                code = (await connect(client, name, PHONE))["pairingCode"]
                await sandbox.link_code(PHONE, code)
                await receiver.wait_for(lambda: any(b["data"].get("state") == "open"
                                                    for b in receiver.events("connection.update")), 20)

                sent = await client.post(f"/message/sendText/{name}", json={"number": BOB, "text": "hello bob"})
                assert sent.status_code == 201, sent.text
                mid = sent.json()["key"]["id"]
                answer = sandbox.phone_send(BOB, f"{PHONE}@s.whatsapp.net", "hello back")

                def updates(status: str) -> bool:
                    return any(b["data"]["keyId"] == mid and b["data"]["status"] == status
                               for b in receiver.events("messages.update"))

                await receiver.wait_for(lambda: updates("DELIVERY_ACK"), 20)
                sandbox.phone_read(BOB, [mid])
                await receiver.wait_for(lambda: updates("READ") and any(
                    b["data"]["key"]["id"] == answer["id"] for b in receiver.events("messages.upsert")), 20)
                await receiver.wait_for(lambda: bool(receiver.events("chats.upsert"))
                                        and bool(receiver.events("contacts.upsert")), 20)

                everything = webhook_bodies(receiver, WATCHED)
                kinds = {b["event"] for b in everything}
                assert {dotted(k) for k in (*MESSAGE_KEYS, "CHATS_UPSERT", "CONTACTS_UPSERT")} <= kinds, kinds
                [send] = [b for b in everything if b["event"] == "send.message"]
                assert send["data"] == sent.json()  # SEND_MESSAGE carries the HTTP answer
                [upsert] = [b for b in everything if b["event"] == "messages.upsert"]
                assert upsert["data"]["message"] == {"conversation": "hello back"}  # no `base64` for a text
                assert upsert["data"]["key"]["remoteJid"] == BOB_JID

                # webhookByEvents: every message event at its kebab suffix
                for r in receiver.received:
                    if r.body["event"] in kinds:
                        assert r.path == "/" + event_suffix(r.body["event"]), (r.path, r.body["event"])
                        assert r.body["destination"] == receiver.url
                # the global webhook (by events too): the same bodies, `destination` = the instance's URL
                want_global = only(everything, GLOBAL_WEBHOOK)
                await global_hook.wait_for(lambda: len(webhook_bodies(global_hook, WATCHED)) >= len(want_global), 20)
                assert webhook_bodies(global_hook, WATCHED)[:len(want_global)] == want_global
                for r in global_hook.received:
                    assert r.path == "/" + event_suffix(r.body["event"]) and r.body["destination"] == receiver.url

                # per instance, each with its own filter
                await same_as_webhook(sock.inbox, f"/{name}", only(everything, LOCAL["websocket"]), LOCAL["websocket"])
                await same_as_webhook(nats_sub.inbox, f"{name}.>", only(everything, LOCAL["nats"]), LOCAL["nats"])
                await same_as_webhook(rabbit.inbox, f"{name}-all", only(everything, LOCAL["rabbitmq"]),
                                      LOCAL["rabbitmq"])
                for key in LOCAL["rabbitmq"]:
                    queue = f"{name}.{dotted(key)}"
                    assert rabbit.inbox.bodies(queue)[:len(only(everything, (key,)))] == only(everything, (key,))
                # global: the socket gets every event; RabbitMQ and NATS the ones their env flags name
                await same_as_webhook(sock.inbox, "/", everything, None)
                await same_as_webhook(rabbit.inbox, f"{prefix}-all", only(everything, GLOBAL_RABBIT), GLOBAL_RABBIT)
                await same_as_webhook(nats_sub.inbox, f"{prefix}.>", only(everything, GLOBAL_NATS), GLOBAL_NATS)

                # The filters change while the instance runs (`/<transport>/set`, re-read per event as
                # Evolution does): a second chat, with Carol, goes only where the new filters say.
                second = {"rabbitmq": ("SEND_MESSAGE", "MESSAGES_UPSERT"), "websocket": ("MESSAGES_UPDATE",)}
                for transport, keys in second.items():
                    resp = await client.post(f"/{transport}/set/{name}",
                                             json={transport: {"enabled": True, "events": list(keys)}})
                    assert resp.status_code == 201, resp.text
                resp = await client.post(f"/nats/set/{name}", json={"nats": {"enabled": False, "events": []}})
                assert resp.status_code == 201, resp.text
                sent2 = await client.post(f"/message/sendText/{name}", json={"number": CAROL, "text": "hi carol"})
                assert sent2.status_code == 201, sent2.text
                mid2 = sent2.json()["key"]["id"]
                answer2 = sandbox.phone_send(CAROL, f"{PHONE}@s.whatsapp.net", "hi there")
                await receiver.wait_for(lambda: any(b["data"]["keyId"] == mid2 and b["data"]["status"] == "DELIVERY_ACK"
                                                    for b in receiver.events("messages.update"))
                                        and any(b["data"]["key"]["id"] == answer2["id"]
                                                for b in receiver.events("messages.upsert")), 20)
                sandbox.phone_read(CAROL, [mid2])  # READ: the websocket lane's last event (a fence)
                await receiver.wait_for(lambda: any(b["data"]["keyId"] == mid2 and b["data"]["status"] == "READ"
                                                    for b in receiver.events("messages.update")), 20)
                carol = about(CAROL_JID, webhook_bodies(receiver, WATCHED))
                for inbox, where, keys in ((sock.inbox, f"/{name}", second["websocket"]),
                                           (rabbit.inbox, f"{name}-all", second["rabbitmq"])):
                    want2 = only(carol, keys)
                    assert want2, keys
                    await inbox.wait_for(lambda i=inbox, w=where, n=len(want2): len(about(CAROL_JID, i.bodies(w))) >= n)
                    assert about(CAROL_JID, inbox.bodies(where)) == want2, where
                # NATS is off for the instance now: its global subjects get Carol's events, its own none
                want_nats = only(carol, GLOBAL_NATS)
                await nats_sub.inbox.wait_for(
                    lambda: len(about(CAROL_JID, nats_sub.inbox.bodies(f"{prefix}.>"))) >= len(want_nats))
                assert about(CAROL_JID, nats_sub.inbox.bodies(f"{prefix}.>"))[:len(want_nats)] == want_nats
                assert about(CAROL_JID, nats_sub.inbox.bodies(f"{name}.>")) == []
    finally:
        await global_hook.stop()
        await sock.stop()
        await nats_sub.stop()
        await rabbit.stop([name, exchange])
