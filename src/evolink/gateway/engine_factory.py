"""Builds the real `evolink.wa` engine for an instance connection."""

from __future__ import annotations

from typing import Any

from evolink.gateway.ports import EngineFactory, EnginePort, EngineRequest


def real_engine_factory(*, ws_url: str, root_public_key: bytes | None, phone_client: str, phone_name: str,
                        overrides: dict[str, Any] | None = None,
                        version: tuple[int, int, int] | None = None) -> EngineFactory:
    """QR mode announces CONFIG_SESSION_PHONE_CLIENT/NAME like Evolution; code mode keeps the engine's
    default browser (Evolution omits `browser` there: unusual tuples get no phone notification).
    `version` is the WA Web version announced (CONFIG_SESSION_PHONE_VERSION; None = the engine's default)."""
    from evolink.wa.config import EngineConfig
    from evolink.wa.engine import Engine

    def make(req: EngineRequest) -> EnginePort:
        kwargs: dict[str, Any] = {"ws_url": ws_url, "extra": {"instance": req.instance_name}}
        if version is not None:
            kwargs["version"] = version
        if root_public_key is not None:
            kwargs["root_public_key"] = root_public_key
        if req.proxy is not None:
            kwargs["proxy"] = req.proxy
        if req.push_name:
            kwargs["push_name"] = req.push_name
        if req.mode == "qr":
            kwargs.update(browser_os=phone_client, browser_name=phone_name)
        kwargs.update(overrides or {})
        return Engine(EngineConfig(**kwargs), req.creds_store, req.clock, message_store=req.message_store)

    return make
