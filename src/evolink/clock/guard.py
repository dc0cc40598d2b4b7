"""``ClockGuard``: the service that measures, diagnoses and acts.

It owns the SNTP client, probes the upstream ``Date`` when NTP cannot decide (and every few minutes
for the metrics), reads the kernel state and the timezone configuration, keeps the latest
``ClockStatus``, feeds the ``CorrectedClock`` (policy ``compensate``) and the metrics, and answers
``authorize_link`` before every connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from evolink import metrics
from evolink.clock.base import CorrectedClock, UpstreamSample
from evolink.clock.config import MIN_POLL_SECONDS, ClockConfig, SkewPolicy
from evolink.clock.httpdate import HttpDateResult, measure_http_date
from evolink.clock.kernel import KernelState, read_kernel_state
from evolink.clock.policy import LinkDecision, decide_link
from evolink.clock.select import Estimate, select_and_combine
from evolink.clock.sntp import ServerStatus, SntpClient
from evolink.clock.status import ClockStatus
from evolink.clock.timezone import TimezoneReport, check_timezone
from evolink.clock.verdict import NtpState, VerdictCode, diagnose

log = logging.getLogger(__name__)

HttpProbe = Callable[[str], Awaitable[HttpDateResult]]
UPSTREAM_MAX_AGE = 3600.0  # engine-fed samples stay valid until the host clock is stepped; bound it
HTTP_MIN_INTERVAL = 300.0  # probe the upstream Date at most this often while NTP is fine


class ClockGuard:
    def __init__(self, config: ClockConfig | None = None, clock: CorrectedClock | None = None, *,
                 wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 kernel_reader: Callable[[], KernelState] = read_kernel_state,
                 http_probe: HttpProbe | None = None, env: Mapping[str, str] | None = None,
                 etc: Path = Path("/etc"), publish_metrics: bool = True) -> None:
        self.config = config or ClockConfig.from_env(env)
        self.clock = clock or CorrectedClock()
        self._wall = wall
        self._monotonic = monotonic
        self._kernel_reader = kernel_reader
        self._http_probe = http_probe or self._default_http_probe
        self._env = env
        self._etc = etc
        self._publish = publish_metrics
        self.sntp = SntpClient(self.config.ntp_servers, packets=self.config.ntp_packets,
                               spacing=self.config.ntp_packet_spacing_seconds,
                               timeout=self.config.ntp_timeout_seconds, wall=wall, monotonic=monotonic)
        self._status: ClockStatus | None = None
        self._status_mono = 0.0
        self._http: HttpDateResult | None = None
        self._http_mono: float | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()

    @property
    def status(self) -> ClockStatus | None:
        return self._status

    def status_age(self) -> float | None:
        return None if self._status is None else self._monotonic() - self._status_mono

    async def _default_http_probe(self, url: str) -> HttpDateResult:
        return await measure_http_date(url, http_timeout=self.config.http_timeout_seconds, wall=self._wall)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background refresh loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="clock-guard")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_first(self, within: float) -> ClockStatus | None:
        """Wait (bounded) for the first measurement of the background loop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), within)
        return self._status

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive anything a probe throws
                log.exception("clock check failed")
            interval = self.config.check_interval_seconds
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))  # jitter: no synchronised fleets

    # --- measurement -----------------------------------------------------------------------------
    async def ensure_fresh(self, max_age: float | None = None) -> ClockStatus:
        limit = self.config.link_max_age_seconds if max_age is None else max_age
        age = self.status_age()
        if self._status is not None and age is not None and age <= limit:
            return self._status
        return await self.check()

    async def check(self) -> ClockStatus:
        """One measurement round now (concurrent callers share the round in progress)."""
        if self._lock.locked():
            async with self._lock:
                if self._status is not None:
                    return self._status
        async with self._lock:
            status = await self._measure()
            self._apply(status)
            return status

    async def _measure(self) -> ClockStatus:
        cfg = self.config
        tz_task = asyncio.create_task(asyncio.to_thread(
            check_timezone, self._env, expected=cfg.expected_tz, etc=self._etc))
        try:
            return await self._measure_sources(tz_task)
        finally:
            if not tz_task.done():
                tz_task.cancel()  # cancelled mid-round (stop()): do not leave the task dangling

    async def _measure_sources(self, tz_task: asyncio.Task[TimezoneReport]) -> ClockStatus:
        cfg = self.config
        results = await self.sntp.poll_all() if cfg.ntp_servers else []
        estimates = [Estimate(str(r.server), r.sample.offset, r.sample.distance)
                     for r in results if r.status is ServerStatus.OK and r.sample is not None]
        selection = select_and_combine(estimates) if estimates else None
        ntp_state: NtpState
        if not cfg.ntp_servers:
            ntp_state = "disabled"
        elif selection is None:
            ntp_state = "unreachable"
        elif not selection.majority:
            ntp_state = "no_majority"
        else:
            ntp_state = "ok"
        http = await self._maybe_probe_http(force=ntp_state != "ok")
        now_host = self._wall()
        upstream: list[UpstreamSample] = []
        if http is not None and http.sample is not None:
            upstream.append(http.sample)
        for s in self.clock.upstream().values():
            if s.source != "upstream_http" and now_host - s.observed_at <= UPSTREAM_MAX_AGE:
                upstream.append(s)
        offset: float | None = None
        uncertainty: float | None = None
        source: str | None = None
        if ntp_state == "ok" and selection is not None:
            offset, uncertainty, source = selection.offset, selection.uncertainty, "ntp"
        elif upstream:
            best = min(upstream, key=lambda s: s.uncertainty)
            offset, uncertainty, source = best.offset, best.uncertainty, best.source
        kernel = self._kernel_reader()
        tz: TimezoneReport | None
        try:
            tz = await tz_task
        except Exception:
            log.exception("timezone check failed")
            tz = None
        corrected_now = now_host + (offset or 0.0)
        # In a thread: naming candidate zones scans tzdata (~0.1 s the first time).
        verdict = await asyncio.to_thread(
            diagnose, offset=offset, source=source, ntp_state=ntp_state,
            ntp_agreeing=selection.agreeing if selection else 0,
            ntp_candidates=selection.candidates if selection else 0, kernel=kernel,
            warn_skew=cfg.warn_skew_seconds, now=datetime.fromtimestamp(corrected_now, UTC))
        return ClockStatus(now_host, verdict, offset, uncertainty, source, ntp_state, tuple(results), selection,
                           tuple(upstream), http, kernel, tz)

    async def _maybe_probe_http(self, *, force: bool) -> HttpDateResult | None:
        url = self.config.upstream_http_url
        if url is None:
            return None
        # While NTP is fine the Date probe is only for the metrics; when NTP cannot decide it is the
        # fallback, but still never more often than a server may be polled.
        min_interval = MIN_POLL_SECONDS if force else HTTP_MIN_INTERVAL
        if self._http is not None and self._http_mono is not None:
            if self._monotonic() - self._http_mono < min_interval:
                return self._http
        try:
            result = await self._http_probe(url)
        except Exception as exc:  # a probe must never break the round
            result = HttpDateResult(url, False, error_kind="connect", error=str(exc))
        self._http, self._http_mono = result, self._monotonic()
        if result.sample is not None:
            s = result.sample
            self.clock.report_upstream(s.source, s.observed_at + s.offset, s.observed_at, s.uncertainty)
        return result

    def _apply(self, status: ClockStatus) -> None:
        previous = self._status
        self._status, self._status_mono = status, self._monotonic()
        self._first.set()
        if (self.config.skew_policy is SkewPolicy.COMPENSATE and status.offset is not None
                and status.uncertainty is not None):
            if status.trusted or abs(status.offset) > status.uncertainty:
                self.clock.set_offset(status.offset, status.uncertainty, status.source or "unknown")
            else:
                # A coarse fallback (±0.5 s or worse) that agrees with the host: correcting by its
                # noise would make a good host clock worse.
                self.clock.set_offset(0.0, status.uncertainty, f"host (agrees with {status.source})")
        if previous is None or previous.verdict.code is not status.verdict.code:
            level = logging.INFO if status.verdict.code is VerdictCode.OK else logging.WARNING
            log.log(level, "clock verdict %s: %s", status.verdict.code, status.verdict.reason,
                    extra={"verdict": str(status.verdict.code), "offset": status.offset,
                           "uncertainty": status.uncertainty, "source": status.source,
                           "sources": status.describe_sources()})
        if self._publish:
            self._publish_metrics(status)

    def _publish_metrics(self, status: ClockStatus) -> None:
        sel = status.selection
        if status.ntp_state == "ok" and sel is not None and sel.offset is not None:
            metrics.set_clock_offset("ntp", sel.offset, sel.uncertainty, status.checked_at)
        else:
            metrics.clear_clock_offset("ntp")  # a stale NTP offset must not keep alerts firing
        for s in status.upstream:
            metrics.set_clock_offset(s.source, s.offset, s.uncertainty, s.observed_at)
        metrics.set_clock_offset("applied", self.clock.offset, self.clock.uncertainty, status.checked_at)
        counts = Counter(str(r.status) for r in status.servers)
        metrics.set_clock_verdict(str(status.verdict.code), sel.agreeing if sel and sel.majority else 0, counts)
        if status.kernel is not None and status.kernel.available:
            metrics.set_kernel_state(status.kernel.maxerror, status.kernel.synced)
        if status.timezone is not None:
            tz = status.timezone
            metrics.set_timezone_info(configured=tz.configured, effective=tz.effective, expected=tz.expected,
                                      tzdata_version=tz.tzdata_version, valid=tz.valid)

    # --- policy ----------------------------------------------------------------------------------
    async def authorize_link(self, method: str = "code", instance: str | None = None) -> LinkDecision:
        """Measure if stale, decide, log and count. A refusal is also counted as a pairing attempt
        with result ``refused_clock`` (callers must not count it again)."""
        try:
            status: ClockStatus | None = await self.ensure_fresh()
        except Exception:
            log.exception("clock measurement before link failed")
            status = self._status
        decision = decide_link(status, self.config.skew_policy, self.config.max_skew_seconds)
        self.record(decision, method, instance)
        return decision

    def record(self, decision: LinkDecision, method: str = "code", instance: str | None = None) -> None:
        """Log and count a decision (use when calling the pure ``decide_link`` yourself)."""
        extra = {"instance": instance, "method": method, "policy": str(decision.policy),
                 "allowed": decision.allowed, "reason": decision.reason,
                 "verdict": decision.clock.get("verdict"), "offset": decision.clock.get("offsetSeconds")}
        if decision.allowed:
            log.info("link allowed by clock guard: %s", decision.message, extra=extra)
        else:
            log.warning("link refused by clock guard: %s", decision.message, extra=extra)
        if self._publish:
            metrics.record_link_decision(str(decision.policy), decision.allowed, decision.reason)
            if not decision.allowed:
                metrics.record_pairing_attempt(method, "refused_clock")
