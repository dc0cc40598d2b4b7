"""CORS as Evolution configures it (`CORS_ORIGIN`, `CORS_METHODS`, `CORS_CREDENTIALS`), with Starlette's
CORSMiddleware instead of Express's `cors` package.

- Preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered by the middleware before
  any route or guard runs, so they need no API key; the requested headers (`apikey`, `content-type`
  …) are allowed, as `cors` reflects them.
- `CORS_ORIGIN=*` (the default) allows every origin. A list allows those origins only; Evolution
  answers any other origin with a 500 ("Not allowed by CORS"), Starlette answers its preflight 400
  "Disallowed CORS origin" and sends no CORS headers on other requests (the browser blocks them).
- `CORS_CREDENTIALS=true` adds `Access-Control-Allow-Credentials: true` and echoes the request's
  origin instead of `*` (a browser ignores `*` on credentialed requests).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from evolink.api.settings import Settings


def install_cors(app: FastAPI, settings: Settings) -> None:
    origins = list(settings.CORS_ORIGIN) or ["*"]
    any_origin = "*" in origins
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"] if any_origin and not settings.CORS_CREDENTIALS else ([] if any_origin else origins),
        # With credentials a literal `*` is useless to browsers: echo the caller's origin (as `cors` does).
        allow_origin_regex=".*" if any_origin and settings.CORS_CREDENTIALS else None,
        allow_methods=list(settings.CORS_METHODS),
        allow_headers=["*"],
        allow_credentials=settings.CORS_CREDENTIALS,
        max_age=600,
    )
