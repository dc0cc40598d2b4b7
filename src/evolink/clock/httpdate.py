"""Upstream time from an HTTP ``Date`` header (the htpdate / AWS ``ClockSkew`` method).

The server stamped ``Date`` (whole seconds, truncated) somewhere between our send and our receive,
so true time at the midpoint is ``Date + 0.5`` ± (RTT/2 + 0.5 s). The same request doubles as the
doctor's upstream reachability/TLS probe, hence the structured error kinds.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from evolink.clock.base import UpstreamSample

SOURCE = "upstream_http"


@dataclass(frozen=True, slots=True)
class HttpDateResult:
    url: str
    ok: bool
    sample: UpstreamSample | None = None
    status_code: int | None = None
    rtt: float | None = None
    tls: bool = False  # the connection used (and verified) TLS
    error_kind: str | None = None  # "tls" | "timeout" | "connect" | "http" | "no_date"
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"url": self.url, "ok": self.ok, "tls": self.tls}
        if self.status_code is not None:
            d["statusCode"] = self.status_code
        if self.rtt is not None:
            d["rtt"] = self.rtt
        if self.sample is not None:
            d.update(offset=self.sample.offset, uncertainty=self.sample.uncertainty)
        if self.error_kind:
            d.update(errorKind=self.error_kind, error=self.error)
        return d


def _is_tls_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in str(exc)


async def measure_http_date(url: str, *, http_timeout: float = 5.0, wall: Callable[[], float] = time.time,
                            client: httpx.AsyncClient | None = None) -> HttpDateResult:
    """HEAD ``url`` and turn its ``Date`` header into an offset sample."""
    own = client is None
    http = client or httpx.AsyncClient(timeout=http_timeout, follow_redirects=False,
                                       headers={"User-Agent": "evolink-clock/1"})
    tls = url.startswith("https://")
    try:
        # TCP/TLS setup falls inside the measured RTT: the bound stays correct, just looser.
        t1 = wall()
        m1 = time.monotonic()
        response = await http.request("HEAD", url)
        m2 = time.monotonic()
        status = response.status_code
        date_header = response.headers.get("date")
    except httpx.TimeoutException as exc:
        return HttpDateResult(url, False, tls=tls, error_kind="timeout", error=f"timeout: {exc}")
    except httpx.HTTPError as exc:
        kind = "tls" if tls and _is_tls_error(exc) else "connect"
        return HttpDateResult(url, False, tls=tls, error_kind=kind, error=str(exc) or type(exc).__name__)
    except OSError as exc:
        return HttpDateResult(url, False, tls=tls, error_kind="connect", error=str(exc))
    finally:
        if own:
            await http.aclose()
    rtt = m2 - m1
    if not date_header:
        return HttpDateResult(url, False, status_code=status, rtt=rtt, tls=tls, error_kind="no_date",
                              error="response has no Date header")
    try:
        server = parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError, IndexError):
        return HttpDateResult(url, False, status_code=status, rtt=rtt, tls=tls, error_kind="no_date",
                              error=f"unparseable Date header {date_header!r}")
    midpoint = t1 + rtt / 2
    sample = UpstreamSample(SOURCE, server + 0.5 - midpoint, rtt / 2 + 0.5, midpoint)
    return HttpDateResult(url, True, sample, status, rtt, tls)
