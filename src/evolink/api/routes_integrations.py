"""Chatwoot and the chatbot integrations (Typebot, OpenAI, n8n, Dify, Flowise, EvoAI, EvolutionBot).

evolink runs none of them. Evolution's manager loads their pages per instance, so every read answers
what Evolution 2.3.7 answers for an instance with the integration enabled and nothing configured
(`BaseChatbotController.findBot` → `[]`, `fetchSettings` → its defaults object, `fetchBot` → `null`,
`ChatwootController.findChatwoot` → the empty object), and every write is a 400 "not supported by
evolink" in Evolution's envelope — never a 404 that breaks a page. Table-driven: one row per bot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request

from evolink.api.auth import instance_guard
from evolink.api.errors import ApiError
from evolink.api.openapi import never_succeeds
from evolink.api.responses import BotSettings, ChatwootFind, Nothing, Null
from evolink.api.unsupported import add_read, add_refusal, constant


@dataclass(frozen=True, slots=True)
class Bot:
    segment: str  # URL segment
    name: str  # Evolution's integrationName (used in its messages)
    id_param: str  # the bot-id path parameter in Evolution's router
    extra_reads: tuple[tuple[str, Any], ...] = ()
    extra_writes: tuple[tuple[str, str], ...] = ()  # (method, path suffix)


BOTS: tuple[Bot, ...] = (
    Bot("typebot", "Typebot", "typebotId", extra_writes=(("POST", "start"),)),
    Bot("openai", "Openai", "openaiBotId", extra_reads=(("creds", []),),
        extra_writes=(("POST", "creds"), ("DELETE", "creds/{openaiCredsId}"), ("GET", "getModels"))),
    Bot("n8n", "N8n", "n8nId"),
    Bot("dify", "Dify", "difyId"),
    Bot("flowise", "Flowise", "flowiseId"),
    Bot("evoai", "Evoai", "evoaiId"),
    Bot("evolutionBot", "EvolutionBot", "evolutionBotId"),
)


def default_bot_settings() -> dict[str, Any]:
    """`fetchSettings` of an instance that never saved any (Evolution's literal defaults)."""
    return {"expire": 300, "keywordFinish": "bye", "delayMessage": 1000, "unknownMessage": "Sorry, I dont understand",
            "listeningFromMe": True, "stopBotFromMe": True, "keepOpen": False, "debounceTime": 1,
            "ignoreJids": [], "splitMessages": False, "timePerChar": 0, "fallbackId": "", "fallback": None}


def empty_chatwoot() -> dict[str, Any]:
    """`GET /chatwoot/find` of an instance without a Chatwoot row."""
    return {"enabled": False, "url": "", "accountId": "", "token": "", "signMsg": False, "nameInbox": "",
            "webhook_url": ""}


router = APIRouter()


def _add_bot(bot: Bot) -> None:
    seg, tag = bot.segment, bot.segment
    add_read(router, f"/{seg}/find/{{instanceName}}", list, tag=tag, summary=f"{bot.name} bots (none)",
             model=list[Nothing])
    add_read(router, f"/{seg}/fetchSettings/{{instanceName}}", default_bot_settings, tag=tag,
             summary=f"{bot.name} settings (Evolution's defaults)", model=BotSettings)
    add_read(router, f"/{seg}/fetch/{{{bot.id_param}}}/{{instanceName}}", lambda: None, tag=tag,
             summary=f"One {bot.name} bot (null: no such bot)", model=Null)
    for suffix, value in bot.extra_reads:
        add_read(router, f"/{seg}/{suffix}/{{instanceName}}", constant(value), tag=tag,
                 summary=f"{bot.name} {suffix} (none)", model=list[Nothing])

    @never_succeeds
    async def sessions(request: Request) -> Any:
        raise ApiError(404, f"{bot.name} not found")

    router.add_api_route(f"/{seg}/fetchSessions/{{{bot.id_param}}}/{{instanceName}}", sessions, methods=["GET"],
                         dependencies=[Depends(instance_guard)], tags=[tag], summary=f"404: no {bot.name} bot",
                         operation_id=f"{seg}_fetchSessions")
    what = f"The {bot.name} integration"
    writes = [("POST", "create"), ("PUT", f"update/{{{bot.id_param}}}"), ("DELETE", f"delete/{{{bot.id_param}}}"),
              ("POST", "settings"), ("POST", "changeStatus"), ("POST", "ignoreJid"), *bot.extra_writes]
    for method, suffix in writes:
        add_refusal(router, method, f"/{seg}/{suffix}/{{instanceName}}", what, tag=tag)


for _bot in BOTS:
    _add_bot(_bot)

add_read(router, "/chatwoot/find/{instanceName}", empty_chatwoot, tag="chatwoot", summary="Chatwoot (not configured)",
         model=ChatwootFind)
add_refusal(router, "POST", "/chatwoot/set/{instanceName}", "The Chatwoot integration", tag="chatwoot")
add_refusal(router, "POST", "/chatwoot/webhook/{instanceName}", "The Chatwoot integration", tag="chatwoot")
