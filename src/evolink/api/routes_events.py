"""Event transports evolink does not run: `/sqs` `set`/`find` (WebSocket, RabbitMQ and NATS are real:
see routes_transports.py and docs/events.md).

Kept apart from the chatbot integrations so a later change can make these real one by one (replace
a row of `TRANSPORTS` with a real router). `find` answers `null`, what Evolution 2.3.7 answers for an
instance with no row for that transport (`EventController.get`); `set` is a 400 "not supported".
"""

from __future__ import annotations

from fastapi import APIRouter

from evolink.api.responses import Null
from evolink.api.unsupported import add_read, add_refusal

# path segment -> the name Evolution uses in its messages
TRANSPORTS: dict[str, str] = {"sqs": "SQS"}

router = APIRouter()

for _seg, _name in TRANSPORTS.items():
    add_read(router, f"/{_seg}/find/{{instanceName}}", lambda: None, tag=_seg,
             summary=f"{_name} settings of the instance (null: not configured)", model=Null)
    add_refusal(router, "POST", f"/{_seg}/set/{{instanceName}}", f"{_name} events", tag=_seg)
