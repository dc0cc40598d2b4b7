"""Every Prometheus metric evolink exports, defined once in a dedicated registry.

A dedicated ``CollectorRegistry`` (not the process-global default) keeps tests isolated and lets
``/metrics`` expose exactly this set. Other modules never touch the metric objects directly; they
call the small helpers below, so label names and values stay bounded and consistent.

Naming follows prometheus.io practice (base units, ``_total`` counters, ``_timestamp_seconds``).
The ``evolution_*`` gauges mirror Evolution API's ``/metrics`` so existing dashboards keep working.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

REGISTRY = CollectorRegistry(auto_describe=True)

CLOCK_SOURCES = ("ntp", "upstream_http", "upstream_stanza", "applied")
VERDICTS = ("ok", "skewed", "unsynced", "local_time_rtc", "ntp_unreachable", "no_majority")
PAIRING_METHODS = ("code", "qr")
PAIRING_RESULTS = ("success", "failed", "expired", "superseded", "refused_clock")
INSTANCE_STATES = ("open", "connecting", "close")
CLOCK_STEP_DIRECTIONS = ("forward", "backward")
DEFAULT_INTEGRATION = "WHATSAPP-BAILEYS"

# --- clock ---------------------------------------------------------------------------------------
clock_offset_seconds = Gauge(
    "evolink_clock_offset_seconds", "Measured clock offset, reference minus host (seconds)",
    ["source"], registry=REGISTRY)
clock_offset_uncertainty_seconds = Gauge(
    "evolink_clock_offset_uncertainty_seconds", "Error bound (half-width) of the measured offset",
    ["source"], registry=REGISTRY)
clock_sync_ok = Gauge(
    "evolink_clock_sync_ok", "1 when the clock guard's verdict is ok, else 0", registry=REGISTRY)
clock_verdict = Gauge(
    "evolink_clock_verdict", "Current clock verdict (1 for the active one)", ["verdict"], registry=REGISTRY)
clock_ntp_sources_agreeing = Gauge(
    "evolink_clock_ntp_sources_agreeing", "Size of the NTP majority clique (0 = no majority)",
    registry=REGISTRY)
clock_ntp_sources = Gauge(
    "evolink_clock_ntp_sources", "Configured NTP servers by last poll status", ["status"], registry=REGISTRY)
clock_last_check_timestamp_seconds = Gauge(
    "evolink_clock_last_check_timestamp_seconds", "Unix time of the last successful measurement",
    ["source"], registry=REGISTRY)
clock_kernel_maxerror_seconds = Gauge(
    "evolink_clock_kernel_maxerror_seconds", "Kernel maxerror from adjtimex (secondary signal)",
    registry=REGISTRY)
clock_kernel_synced = Gauge(
    "evolink_clock_kernel_synced", "1 when the kernel maxerror is below 16 s", registry=REGISTRY)
clock_steps_total = Counter(
    "evolink_clock_steps", "Wall-clock steps detected while running (VM resume, date -s, NTP step)",
    ["direction"], registry=REGISTRY)
clock_link_decisions_total = Counter(
    "evolink_clock_link_decisions_total", "Link decisions taken by the clock guard",
    ["policy", "decision", "reason"], registry=REGISTRY)
timezone_info = Info(
    "evolink_timezone", "Time zone configuration", registry=REGISTRY)

# --- pairing / instances --------------------------------------------------------------------------
pairing_attempts_total = Counter(
    "evolink_pairing_attempts_total", "Device link attempts by method and result",
    ["method", "result"], registry=REGISTRY)
pairing_duration_seconds = Histogram(
    "evolink_pairing_duration_seconds", "Time from connect to link outcome", ["method"],
    buckets=(1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300), registry=REGISTRY)
instances = Gauge("evolink_instances", "Instances by connection state", ["state"], registry=REGISTRY)
cluster_node_info = Gauge(
    "evolink_cluster_node_info", "1, labelled with this node's EVOLINK_NODE_ID (cluster mode only)", ["node"],
    registry=REGISTRY)

# --- Evolution API compatible ---------------------------------------------------------------------
evolution_environment_info = Gauge(
    "evolution_environment_info", "Environment information", ["version", "clientName", "serverUrl"],
    registry=REGISTRY)
evolution_instances_total = Gauge("evolution_instances_total", "Total number of instances", registry=REGISTRY)
evolution_instance_up = Gauge(
    "evolution_instance_up", "1 if instance state is open, else 0", ["instance", "integration"],
    registry=REGISTRY)
evolution_instance_state = Gauge(
    "evolution_instance_state", "Instance state as a labelled metric", ["instance", "integration", "state"],
    registry=REGISTRY)

for _m in PAIRING_METHODS:  # export zeros so rate() and alerts work before the first attempt
    for _r in PAIRING_RESULTS:
        pairing_attempts_total.labels(_m, _r)
for _s in INSTANCE_STATES:
    instances.labels(_s).set(0)
for _d in CLOCK_STEP_DIRECTIONS:
    clock_steps_total.labels(_d)
evolution_instances_total.set(0)


def _bounded(value: str, allowed: tuple[str, ...], fallback: str) -> str:
    return value if value in allowed else fallback


# --- helpers: clock --------------------------------------------------------------------------------
def clock_source_label(source: str) -> str:
    """Map any source name to the bounded label set (engine sources are free-form)."""
    if source in CLOCK_SOURCES:
        return source
    return "upstream_http" if source.startswith("upstream_http") else "upstream_stanza"


def set_clock_offset(source: str, offset: float, uncertainty: float | None, checked_at: float) -> None:
    label = clock_source_label(source)
    clock_offset_seconds.labels(label).set(offset)
    if uncertainty is not None:
        clock_offset_uncertainty_seconds.labels(label).set(uncertainty)
    clock_last_check_timestamp_seconds.labels(label).set(checked_at)


def clear_clock_offset(source: str) -> None:
    """Drop the offset series of a source that no longer measures (its last-check time stays)."""
    label = clock_source_label(source)
    for gauge in (clock_offset_seconds, clock_offset_uncertainty_seconds):
        try:
            gauge.remove(label)
        except KeyError:
            pass


def set_clock_verdict(verdict: str, ntp_agreeing: int, ntp_status_counts: Mapping[str, int]) -> None:
    for v in VERDICTS:
        clock_verdict.labels(v).set(1 if v == verdict else 0)
    clock_sync_ok.set(1 if verdict == "ok" else 0)
    clock_ntp_sources_agreeing.set(ntp_agreeing)
    clock_ntp_sources.clear()
    for status, count in ntp_status_counts.items():
        clock_ntp_sources.labels(status).set(count)


def set_kernel_state(maxerror: float | None, synced: bool | None) -> None:
    if maxerror is not None:
        clock_kernel_maxerror_seconds.set(maxerror)
    if synced is not None:
        clock_kernel_synced.set(1 if synced else 0)


def set_timezone_info(*, configured: str | None, effective: str, expected: str | None,
                      tzdata_version: str | None, valid: bool) -> None:
    timezone_info.info({"configured": configured or "", "effective": effective, "expected": expected or "",
                        "tzdata_version": tzdata_version or "", "valid": "true" if valid else "false"})


def record_clock_step(direction: str) -> None:
    clock_steps_total.labels(_bounded(direction, CLOCK_STEP_DIRECTIONS, "forward")).inc()


def record_link_decision(policy: str, allowed: bool, reason: str) -> None:
    clock_link_decisions_total.labels(policy, "allowed" if allowed else "refused", reason).inc()


# --- helpers: pairing / instances -------------------------------------------------------------------
def record_pairing_attempt(method: str, result: str, duration: float | None = None) -> None:
    """Count one link attempt outcome. ``method``: code|qr; ``result``: success|failed|expired|superseded|
    refused_clock (anything else counts as failed).

    The clock guard already records ``refused_clock`` when it refuses a link; callers record the rest.
    """
    m = _bounded(method, PAIRING_METHODS, "code")
    r = _bounded(result, PAIRING_RESULTS, "failed")
    pairing_attempts_total.labels(m, r).inc()
    if duration is not None and duration >= 0:
        pairing_duration_seconds.labels(m).observe(duration)


def set_instance_states(states: Mapping[str, str] | Iterable[tuple[str, str]],
                        integration: str | Mapping[str, str] = DEFAULT_INTEGRATION) -> None:
    """Publish a full snapshot ``{instance name: state}`` (state: open|connecting|close).

    ``integration`` is one value for all, or a per-instance mapping (Evolution's label).
    """
    items = list(states.items() if isinstance(states, Mapping) else states)
    counts = dict.fromkeys(INSTANCE_STATES, 0)
    evolution_instance_up.clear()
    evolution_instance_state.clear()
    for name, state in items:
        st = _bounded(state, INSTANCE_STATES, "close")
        counts[st] += 1
        integ = integration.get(name, DEFAULT_INTEGRATION) if isinstance(integration, Mapping) else integration
        evolution_instance_up.labels(name, integ).set(1 if st == "open" else 0)
        evolution_instance_state.labels(name, integ, st).set(1)
    for st, n in counts.items():
        instances.labels(st).set(n)
    evolution_instances_total.set(len(items))


def set_cluster_node(node_id: str) -> None:
    cluster_node_info.clear()
    cluster_node_info.labels(node_id).set(1)


def set_environment_info(version: str, client_name: str, server_url: str) -> None:
    evolution_environment_info.clear()
    evolution_environment_info.labels(version, client_name, server_url).set(1)
