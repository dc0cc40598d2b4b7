"""Reactions: a ``reactionMessage`` naming the message it reacts to, sent like any message.

The key names the target as the chat sees it: ``remoteJid`` = the chat, ``fromMe`` = whether we
wrote the target, ``participant`` = its author in a group when not us (Baileys 7 and whatsmeow
``BuildReaction``). An empty ``emoji`` removes our reaction. The stanza's ``type`` is
``reaction`` (``message_send.stanza_type``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evolink.wa import jids
from evolink.wa.message_send import SendError, SendResult, send_message
from evolink.wire.errors import DecodeError
from evolink.wire.proto.e2e_pb2 import Message

if TYPE_CHECKING:
    from evolink.wa.engine import Engine

MAX_EMOJI = 32  # characters; a reaction is one emoji (possibly several code points)


def reaction_message(chat: str, target_id: str, emoji: str, *, from_me: bool, participant: str | None,
                     now_ms: int) -> Message:
    if not target_id or len(target_id) > 128:
        raise SendError("a reaction needs the id of the message it reacts to")
    if len(emoji) > MAX_EMOJI:
        raise SendError(f"a reaction is at most {MAX_EMOJI} characters")
    msg = Message()
    r = msg.reactionMessage
    r.key.remoteJid = chat
    r.key.fromMe = from_me
    r.key.id = target_id
    if participant and jids.is_group(chat) and not from_me:
        r.key.participant = participant
    r.text = emoji
    r.senderTimestampMs = now_ms
    return msg


async def send_reaction(engine: Engine, chat: str, target_id: str, emoji: str, *, from_me: bool = False,
                        participant: str | None = None, within: float | None = None) -> SendResult:
    """React with ``emoji`` ("" removes the reaction) to message ``target_id`` of ``chat``."""
    try:
        chat = chat if jids.is_group(chat) else jids.non_ad(chat)
    except DecodeError as exc:
        raise SendError(f"bad chat JID: {exc}") from None
    msg = reaction_message(chat, target_id, emoji, from_me=from_me, participant=participant,
                           now_ms=int(engine.clock.time() * 1000))
    return await send_message(engine, chat, msg, within=within)
