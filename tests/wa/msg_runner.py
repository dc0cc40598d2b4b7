"""Runs one engine on the SQL stores (SQLite) in its own process, for the SIGKILL trials.

    python msg_runner.py --db PATH --ws-url URL --root-key HEX --secret S

Prints one JSON object per line on stdout: ``{"event": "qr", "qr"}``, ``{"event": "open"}``,
``{"event": "message", "id", "text"}`` (after the message is in the store), ``{"event": "sent",
"id", "text"}`` (after the server's ack), ``{"event": "send_failed", "text", "error"}``. Reads
commands on stdin: ``{"cmd": "send", "to", "text"}``, ``{"cmd": "send_many", "to", "prefix",
"start", "n"}``. The test kills it with SIGKILL at random points; nothing here cleans up on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from evolink.gateway.creds import SqlCredsStore
from evolink.gateway.message_store import SqlMessageStore
from evolink.store import CredsCipher, Store
from evolink.store.db import open_database
from evolink.wa.config import EngineConfig
from evolink.wa.engine import Engine
from evolink.wa.events import MessageEvent, OpenEvent, QrEvent

INSTANCE = "sigkill"


def emit(event: str, **data: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


async def commands(engine: Engine) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "send":
            texts = [cmd["text"]]
        elif cmd["cmd"] == "send_many":  # texts prefix000, prefix001, … sent one after the other
            texts = [f"{cmd['prefix']}{cmd['start'] + i:03}" for i in range(cmd["n"])]
        else:
            continue
        for text in texts:
            try:
                sent = await engine.send_text(cmd["to"], text)
                emit("sent", id=sent.id, text=text)
            except Exception as exc:
                emit("send_failed", text=text, error=f"{type(exc).__name__}: {exc}")


async def main(args: argparse.Namespace) -> None:
    db = open_database(f"sqlite+aiosqlite:///{args.db}")
    await db.migrate()
    store = Store(db, CredsCipher(args.secret))
    if await store.get_instance(INSTANCE) is None:
        await store.create_instance(instance_id=INSTANCE, name=INSTANCE, token="t", integration="WHATSAPP-BAILEYS",
                                    number=None, client_name="c", settings={}, webhook=None)
    config = EngineConfig(ws_url=args.ws_url, root_public_key=bytes.fromhex(args.root_key),
                          reconnect_base=0.05, reconnect_cap=0.2, connect_timeout=5.0, query_timeout=10.0)
    engine = Engine(config, SqlCredsStore(store, INSTANCE),
                    message_store=SqlMessageStore(db, store.cipher, INSTANCE))

    def on_event(ev: object) -> None:
        if isinstance(ev, QrEvent):
            emit("qr", qr=ev.qr)
        elif isinstance(ev, OpenEvent):
            emit("open", jid=ev.jid)
        elif isinstance(ev, MessageEvent):
            emit("message", id=ev.id, text=ev.message.conversation)

    engine.subscribe(on_event)
    await engine.start()
    await commands(engine)
    await engine.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("--db", "--ws-url", "--root-key", "--secret"):
        parser.add_argument(name, required=True)
    asyncio.run(main(parser.parse_args()))
