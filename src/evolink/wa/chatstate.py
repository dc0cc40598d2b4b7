"""Chat states (typing indicators): ``<chatstate to=<chat>><composing/></chatstate>``.

As Baileys ``sendPresenceUpdate`` sends them for ``composing`` / ``recording`` / ``paused``:
``recording`` is ``<composing media="audio"/>``; ``paused`` is ``<paused/>``. The server relays it to
the chat's devices; nothing answers it.
"""

from __future__ import annotations

from enum import StrEnum

from evolink.wire.binary import Node


class ChatState(StrEnum):
    COMPOSING = "composing"
    RECORDING = "recording"
    PAUSED = "paused"


def chatstate_node(to: str, state: ChatState, own_jid: str | None = None) -> Node:
    if "@" not in to:
        raise ValueError(f"bad chat JID {to[:64]!r}")
    if state is ChatState.RECORDING:
        child = Node("composing", {"media": "audio"})
    else:
        child = Node(state.value)
    attrs = {"to": to}
    if own_jid:
        attrs["from"] = own_jid
    return Node("chatstate", attrs, [child])
