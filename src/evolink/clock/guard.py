"""``ClockGuard``: the service that measures, diagnoses and acts.

It owns the SNTP client, probes the upstream ``Date`` when NTP cannot decide (and every few minutes
for the metrics), reads the kernel state and the timezone configuration, keeps the latest
``ClockStatus``, feeds the ``CorrectedClock`` (policy ``compensate``) and the metrics, and answers
``authorize_link`` before every connect.

A ``StepWatcher`` (``evolink.clock.step``) ticks beside the measurement loop. On a wall-clock step
the guard, synchronously on that tick: moves cached samples with the host clock (dropping the ones
that may straddle the step), corrects the ``CorrectedClock`` by the step under ``compensate`` (the
step size is known to a few ms, so true time is right before any packet is sent), marks the last
measurement stale (links wait for the re-measure), logs one line, counts
``evolink_clock_steps_total{direction}`` and calls the step listeners (the gateway's ``CLOCK_STEP``
event); then it re-measures at once. A round that was in progress during the step is measured
again rather than applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from evolink import metrics
from evolink.clock.base import CorrectedClock, UpstreamSample
from evolink.clock.base import elapsed as default_elapsed
from evolink.clock.config import MIN_POLL_SECONDS, ClockConfig, SkewPolicy
from evolink.clock.httpdate import HttpDateResult, measure_http_date
from evolink.clock.kernel import KernelState, read_kernel_state
from evolink.clock.policy import LinkDecision, decide_link
from evolink.clock.select import Estimate, select_and_combine
from evolink.clock.sntp import ServerStatus, SntpClient
from evolink.clock.status import ClockStatus
from evolink.clock.step import ClockStep, StepReport, StepWatcher
from evolink.clock.timezone import TimezoneReport, check_timezone
from evolink.clock.verdict import NtpState, VerdictCode, diagnose

log = logging.getLogger(__name__)

HttpProbe = Callable[[str], Awaitable[HttpDateResult]]
UPSTREAM_MAX_AGE = 3600.0  # engine-fed samples stay valid until the host clock is stepped; bound it
HTTP_MIN_INTERVAL = 300.0  # probe the upstream Date at most this often while NTP is fine
STEP_WINDOW_MARGIN = 0.05  # seconds added to the detector's tick gap when deciding what may straddle a step
MEASURE_ATTEMPTS = 3  # rounds tried while the clock keeps being stepped under them
STEP_MENTION_SECONDS = 3600.0  # a refusal names the last step for this long
StepListener = Callable[[StepReport], object]


class ClockGuard:
    def __init__(self, config: ClockConfig | None = None, clock: CorrectedClock | None = None, *,
                 wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 kernel_reader: Callable[[], KernelState] = read_kernel_state,
                 http_probe: HttpProbe | None = None, env: Mapping[str, str] | None = None,
                 etc: Path = Path("/etc"), publish_metrics: bool = True,
                 elapsed: Callable[[], float] = default_elapsed, step_tick: float | None = None) -> None:
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
        self._elapsed = elapsed
        watch_kw = {} if step_tick is None else {"interval": step_tick}
        self.watcher = StepWatcher(self.config.step_threshold_seconds, self._on_step, wall=wall, elapsed=elapsed,
                                   **watch_kw)
        self._step_gen = 0  # bumped on every step: a status measured under an older value is stale
        self._status_gen = 0
        self._http_gen = 0
        self.last_step: StepReport | None = None
        self._last_step_elapsed = 0.0
        self.steps_detected = 0
        self._step_listeners: list[StepListener] = []
        self._remeasure: asyncio.Task[None] | None = None

    @property
    def status(self) -> ClockStatus | None:
        return self._status

    def status_age(self) -> float | None:
        return None if self._status is None else self._monotonic() - self._status_mono

    @property
    def stale(self) -> bool:
        """The host clock was stepped since the last measurement (a re-measure is due or running)."""
        return self._status is not None and self._status_gen != self._step_gen

    def add_step_listener(self, listener: StepListener) -> Callable[[], None]:
        """Call ``listener(report)`` on every detected step (on the event loop; keep it quick)."""
        self._step_listeners.append(listener)
        return lambda: self._step_listeners.remove(listener) if listener in self._step_listeners else None

    async def _default_http_probe(self, url: str) -> HttpDateResult:
        return await measure_http_date(url, http_timeout=self.config.http_timeout_seconds, wall=self._wall)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background refresh loop and the step watcher (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="clock-guard")
        self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()
        for task in (self._task, self._remeasure):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._remeasure = None

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
        if self._status is not None and age is not None and age <= limit and not self.stale:
            return self._status
        return await self.check()

    async def check(self) -> ClockStatus:
        """One measurement round now (concurrent callers share the round in progress)."""
        if self._lock.locked():
            async with self._lock:
                if self._status is not None and not self.stale:
                    return self._status
        async with self._lock:
            for _ in range(MEASURE_ATTEMPTS):
                gen = self._step_gen
                status = await self._measure()
                if gen == self._step_gen:
                    break
                log.info("clock stepped during a measurement round; measuring again")
            self._apply(status, gen)
            return status

    # --- steps -----------------------------------------------------------------------------------
    def _on_step(self, step: ClockStep) -> None:
        """The watcher saw a wall-clock step (synchronous, on its tick)."""
        self._step_gen += 1
        window = step.gap + STEP_WINDOW_MARGIN
        self.sntp.shift(step.seconds, window)
        self._shift_http(step.seconds, window)
        self.clock.shift_upstream(step.seconds, window)
        previous = self._status.offset if self._status is not None else None
        estimated = None if previous is None else previous - step.seconds
        policy = self.config.skew_policy
        if policy is SkewPolicy.COMPENSATE:
            self.clock.set_offset(self.clock.offset - step.seconds, self.clock.uncertainty, self.clock.source)
        report = StepReport(step, self.clock.time(), estimated, str(policy), self.config.step_threshold_seconds)
        self.last_step, self._last_step_elapsed = report, self._elapsed()
        self.steps_detected += 1
        log.warning("%s (%+.3f s); re-measuring", report.describe(), step.seconds,
                    extra={"step_seconds": round(step.seconds, 3), "direction": str(step.direction),
                           "estimated_offset": estimated, "policy": str(policy),
                           "applied_offset": self.clock.offset})
        if self._publish:
            metrics.record_clock_step(str(step.direction))
            metrics.set_clock_offset("applied", self.clock.offset, self.clock.uncertainty, step.wall_after)
        for listener in list(self._step_listeners):
            try:
                listener(report)
            except Exception:
                log.exception("clock step listener failed")
        if self._remeasure is None or self._remeasure.done():
            self._remeasure = asyncio.get_running_loop().create_task(self._remeasure_now(), name="clock-remeasure")

    def _shift_http(self, step: float, window: float) -> None:
        self._http_gen += 1
        http, at = self._http, self._http_mono
        if http is None or at is None:
            return
        if self._monotonic() - at > window and http.sample is not None:
            self._http = replace(http, sample=http.sample.shifted(step))
        else:  # may straddle the step, or carries no sample: probe again
            self._http = self._http_mono = None

    async def _remeasure_now(self) -> None:
        try:
            while self.stale or self._status is None:
                await self.check()
                if self.stale:
                    continue  # stepped again during the round
                break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("clock re-measure after a step failed")

    async def wait_remeasured(self, within: float) -> bool:
        """Wait (bounded) for the re-measure after the last step; False if it is still running."""
        task = self._remeasure
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), within)
        return not self.stale

    def step_note(self) -> dict[str, object] | None:
        """``lastStep`` for a link decision: the last step if it is recent."""
        if self.last_step is None or self._elapsed() - self._last_step_elapsed > STEP_MENTION_SECONDS:
            return None
        return {**self.last_step.to_dict(),
                "secondsAgo": round(self._elapsed() - self._last_step_elapsed, 1), "remeasured": not self.stale}

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
        gen = self._http_gen
        try:
            result = await self._http_probe(url)
        except Exception as exc:  # a probe must never break the round
            result = HttpDateResult(url, False, error_kind="connect", error=str(exc))
        if gen != self._http_gen:
            return result  # the host clock was stepped during the probe: neither cached nor reported
        self._http, self._http_mono = result, self._monotonic()
        if result.sample is not None:
            s = result.sample
            self.clock.report_upstream(s.source, s.observed_at + s.offset, s.observed_at, s.uncertainty)
        return result

    def _apply(self, status: ClockStatus, gen: int) -> None:
        previous = self._status
        self._status, self._status_mono, self._status_gen = status, self._monotonic(), gen
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
        note = self.step_note()
        if note is not None:
            message = decision.message
            if not decision.allowed and self.last_step is not None:
                message += (f" The host {self.last_step.describe()} {note['secondsAgo']} s ago"
                            f"{'' if note['remeasured'] else ' (re-measure pending)'}.")
            decision = replace(decision, message=message, clock={**decision.clock, "lastStep": note})
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
