"""``ClockStatus``: one measurement round (sources, combined offset, verdict) as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from evolink.clock.base import UpstreamSample, iso_utc
from evolink.clock.httpdate import HttpDateResult
from evolink.clock.kernel import KernelState
from evolink.clock.select import Selection
from evolink.clock.sntp import ServerResult, ServerStatus
from evolink.clock.timezone import TimezoneReport
from evolink.clock.verdict import NtpState, Verdict, VerdictCode


def iso(ts: float) -> str:
    return iso_utc(datetime.fromtimestamp(ts, UTC))


@dataclass(frozen=True, slots=True)
class ClockStatus:
    checked_at: float  # host unix time of the measurement
    verdict: Verdict
    offset: float | None  # true − host, seconds (None: unknown)
    uncertainty: float | None
    source: str | None  # "ntp" | "upstream_http" | an engine-reported upstream source
    ntp_state: NtpState
    servers: tuple[ServerResult, ...] = ()
    selection: Selection | None = None
    upstream: tuple[UpstreamSample, ...] = ()
    http: HttpDateResult | None = None
    kernel: KernelState | None = None
    timezone: TimezoneReport | None = None
    sources_used: tuple[str, ...] = field(default_factory=tuple)

    @property
    def trusted(self) -> bool:
        """Offset backed by an NTP majority (as opposed to a coarse upstream fallback)."""
        return self.ntp_state == "ok" and self.offset is not None

    @property
    def ok(self) -> bool:
        return self.verdict.code is VerdictCode.OK

    @property
    def true_checked_at(self) -> float:
        return self.checked_at + (self.offset or 0.0)

    def silent_servers(self) -> tuple[str, ...]:
        bad = (ServerStatus.SILENT, ServerStatus.UNREACHABLE, ServerStatus.DNS)
        return tuple(str(r.server) for r in self.servers if r.status in bad)

    def describe_sources(self) -> str:
        """One line for messages: which sources said what."""
        parts: list[str] = []
        sel = self.selection
        if self.servers:
            if sel is not None and sel.majority:
                parts.append(f"ntp {sel.agreeing}/{len(self.servers)} agreeing [{', '.join(sel.truechimers)}]")
            else:
                answered = sel.candidates if sel else 0
                parts.append(f"ntp {answered}/{len(self.servers)} answered, no majority"
                             if answered else f"ntp 0/{len(self.servers)} answered")
            if sel is not None and sel.majority and sel.falsetickers:
                parts.append(f"rejected falsetickers [{', '.join(sel.falsetickers)}]")
            silent = self.silent_servers()
            if silent:
                parts.append(f"silent [{', '.join(silent)}]")
        for s in self.upstream:
            parts.append(f"{s.source} {s.offset:+.1f} s ± {s.uncertainty:.1f}")
        return "; ".join(parts) if parts else "no sources"

    def summary(self) -> dict[str, object]:
        """Compact JSON-able form (the ``clock`` object of a link refusal, webhook/debug output)."""
        d: dict[str, object] = {
            "verdict": str(self.verdict.code),
            "reason": self.verdict.reason,
            "offsetSeconds": self.offset,
            "uncertaintySeconds": self.uncertainty,
            "source": self.source,
            "trusted": self.trusted,
            "ntp": self.ntp_state,
            "sources": self.describe_sources(),
            "checkedAt": iso(self.true_checked_at),
            "hostTime": iso(self.checked_at),
        }
        if self.verdict.fix:
            d["fix"] = self.verdict.fix
        if self.verdict.zone_offset:
            d["zoneOffset"] = self.verdict.zone_offset
            d["candidateZones"] = list(self.verdict.candidate_zones)
        return d

    def to_dict(self) -> dict[str, object]:
        """Full detail (doctor --json, debugging)."""
        d = self.summary()
        d["servers"] = [r.to_dict() for r in self.servers]
        if self.selection is not None:
            d["selection"] = {"candidates": self.selection.candidates, "agreeing": self.selection.agreeing,
                              "majority": self.selection.majority,
                              "truechimers": list(self.selection.truechimers),
                              "falsetickers": list(self.selection.falsetickers)}
        d["upstream"] = [{"source": s.source, "offset": s.offset, "uncertainty": s.uncertainty,
                          "observedAt": iso(s.observed_at)} for s in self.upstream]
        if self.http is not None:
            d["http"] = self.http.to_dict()
        if self.kernel is not None:
            d["kernel"] = self.kernel.to_dict()
        if self.timezone is not None:
            d["timezone"] = self.timezone.to_dict()
        return d
