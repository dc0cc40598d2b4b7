"""Timezone configuration checks and zone lookups.

Epoch time (what WhatsApp and evolink use internally) does not depend on the zone, so zone problems
are warnings, never link blockers. What they catch: a ``TZ`` typo that glibc silently turns into UTC,
``/etc/localtime`` and ``/etc/timezone`` disagreeing, the zone differing from the operator's
``CLOCK_EXPECTED_TZ``, and missing zone data (slim/distroless images).
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

Status = Literal["pass", "warn", "fail"]

# glibc POSIX TZ strings such as "EST5EDT,M3.2.0,M11.1.0" or "<-03>3" (not zone names).
_POSIX_TZ = re.compile(
    r"^(?:<[+-]?[A-Za-z0-9]+>|[A-Za-z]{3,})[+-]?\d{1,2}(?::\d{2}){0,2}"
    r"(?:(?:<[+-]?[A-Za-z0-9]+>|[A-Za-z]{3,})(?:[+-]?\d{1,2}(?::\d{2}){0,2})?(?:,[^,]+,[^,]+)?)?$")

# Well-known zones listed first when naming candidates for an offset (the rest follow alphabetically).
_PROMINENT = (
    "America/Sao_Paulo", "America/Argentina/Buenos_Aires", "America/New_York", "America/Chicago",
    "America/Denver", "America/Los_Angeles", "America/Mexico_City", "America/Bogota", "America/Lima",
    "America/Santiago", "America/Caracas", "America/Halifax", "America/St_Johns", "America/Anchorage",
    "Pacific/Honolulu", "Atlantic/Azores", "Atlantic/Cape_Verde", "Europe/London", "Europe/Lisbon",
    "Africa/Lagos", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Rome", "Africa/Cairo",
    "Africa/Johannesburg", "Europe/Athens", "Europe/Kyiv", "Europe/Moscow", "Europe/Istanbul",
    "Asia/Riyadh", "Africa/Nairobi", "Asia/Baghdad", "Asia/Tehran", "Asia/Dubai", "Asia/Kabul",
    "Asia/Karachi", "Asia/Tashkent", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Dhaka", "Asia/Yangon",
    "Asia/Bangkok", "Asia/Jakarta", "Asia/Ho_Chi_Minh", "Asia/Shanghai", "Asia/Singapore",
    "Asia/Manila", "Asia/Tokyo", "Asia/Seoul", "Australia/Perth", "Australia/Eucla",
    "Australia/Adelaide", "Australia/Darwin", "Australia/Sydney", "Australia/Brisbane",
    "Pacific/Noumea", "Pacific/Auckland", "Pacific/Chatham", "Pacific/Tongatapu", "Pacific/Kiritimati",
)
_ALIAS_PREFIXES = ("Etc/", "SystemV/", "US/", "Brazil/", "Canada/", "Chile/", "Mexico/", "posix/", "right/")


def load_zone(key: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def format_utc_offset(seconds: float) -> str:
    """``UTC+03:00`` / ``UTC−03:00`` (true minus sign, as in the verdict text)."""
    total = round(seconds / 60)
    sign = "+" if total >= 0 else "−"
    h, m = divmod(abs(total), 60)
    return f"UTC{sign}{h:02d}:{m:02d}"


@functools.lru_cache(maxsize=1)
def _canonical_zones() -> tuple[str, ...]:
    keys = zoneinfo.available_timezones()
    return tuple(sorted(k for k in keys if "/" in k and not k.startswith(_ALIAS_PREFIXES)))


@functools.lru_cache(maxsize=64)
def _zones_with_offset_cached(offset_minutes: int, hour: int) -> tuple[str, ...]:
    at = datetime.fromtimestamp(hour * 3600, UTC)
    target = timedelta(minutes=offset_minutes)
    matches = [k for k in _canonical_zones() if (z := load_zone(k)) is not None and at.astimezone(z).utcoffset() == target]
    rank = {k: i for i, k in enumerate(_PROMINENT)}
    return tuple(sorted(matches, key=lambda k: (rank.get(k, len(rank)), k)))


def zones_with_offset(offset_seconds: float, at: datetime | None = None) -> tuple[str, ...]:
    """IANA zones whose UTC offset at instant ``at`` equals ``offset_seconds`` (prominent first)."""
    when = at or datetime.now(UTC)
    return _zones_with_offset_cached(round(offset_seconds / 60), int(when.timestamp() // 3600))


def same_behaviour(a: zoneinfo.ZoneInfo, b: zoneinfo.ZoneInfo, at: datetime) -> bool:
    """Aliases differ by name, not behaviour: compare offsets over the coming year."""
    return all((at + timedelta(days=d)).astimezone(a).utcoffset() == (at + timedelta(days=d)).astimezone(b).utcoffset()
               for d in (0, 91, 182, 273))


@dataclass(frozen=True, slots=True)
class TimezoneReport:
    status: Status
    configured: str | None  # raw TZ value (None = unset)
    effective: str  # zone key the process actually uses (glibc semantics)
    source: str  # "TZ" | "/etc/localtime" | "default"
    valid: bool  # False when TZ names no zone (glibc silently uses UTC)
    expected: str | None
    etc_localtime: str | None
    etc_timezone: str | None
    tzdata_version: str | None  # version of the tzdata wheel (IANA release)
    system_zoneinfo: bool
    zones_available: int
    utc_offset: str  # effective zone's offset now, e.g. "UTC+00:00"
    problems: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        return {"status": self.status, "configured": self.configured, "effective": self.effective,
                "source": self.source, "valid": self.valid, "expected": self.expected,
                "etcLocaltime": self.etc_localtime, "etcTimezone": self.etc_timezone,
                "tzdataVersion": self.tzdata_version, "systemZoneinfo": self.system_zoneinfo,
                "zonesAvailable": self.zones_available, "utcOffset": self.utc_offset,
                "problems": list(self.problems)}


def _key_from_path(path: str) -> str | None:
    marker = "/zoneinfo/"
    if marker in path:
        key = path.split(marker, 1)[1]
        return key.removeprefix("posix/")
    return None


def _read_etc(etc: Path) -> tuple[str | None, str | None]:
    localtime: str | None = None
    lt = etc / "localtime"
    if lt.is_symlink() or lt.exists():
        real = os.path.realpath(lt)
        localtime = _key_from_path(real) or ("(copy)" if lt.exists() else None)
    timezone: str | None = None
    try:
        timezone = (etc / "timezone").read_text(encoding="utf-8").strip().splitlines()[0].strip() or None
    except (OSError, IndexError, UnicodeDecodeError):
        timezone = None
    return localtime, timezone


def tzdata_version() -> str | None:
    try:
        import tzdata

        return str(tzdata.IANA_VERSION)
    except ImportError:
        try:
            return importlib.metadata.version("tzdata")
        except importlib.metadata.PackageNotFoundError:
            return None


def check_timezone(env: Mapping[str, str] | None = None, *, expected: str | None = None,
                   etc: Path = Path("/etc"), now: datetime | None = None) -> TimezoneReport:
    src = os.environ if env is None else env
    at = now or datetime.now(UTC)
    warns: list[str] = []
    fails: list[str] = []
    configured = src.get("TZ")
    etc_localtime, etc_timezone = _read_etc(etc)
    valid = True
    effective_zone: zoneinfo.ZoneInfo | None
    if configured is not None:
        source = "TZ"
        raw = configured.removeprefix(":").strip()
        key = _key_from_path(raw) if raw.startswith("/") else raw
        if raw == "":
            effective, effective_zone = "UTC", load_zone("UTC")
        elif raw.startswith("/") and not Path(raw).is_file():
            valid, effective, effective_zone = False, "UTC", load_zone("UTC")
            warns.append(f"TZ={configured!r} points to a missing file: glibc silently uses UTC")
        elif key is not None and (zone := load_zone(key)) is not None:
            effective, effective_zone = key, zone
        elif _POSIX_TZ.match(raw) and "/" not in raw:
            effective, effective_zone = raw, None  # a valid POSIX rule; zoneinfo cannot evaluate it
        else:
            valid, effective, effective_zone = False, "UTC", load_zone("UTC")
            abbrev = re.match(r"[A-Za-z]*", raw)
            hint = difflib.get_close_matches(raw, _canonical_zones(), n=1, cutoff=0.75)
            warns.append(
                f"TZ={configured!r} is not a known time zone: glibc silently uses UTC"
                + (f" (shown as {abbrev.group(0)!r})" if abbrev and abbrev.group(0) else "")
                + (f"; did you mean {hint[0]!r}?" if hint else ""))
    elif etc_localtime and etc_localtime != "(copy)":
        source = "/etc/localtime"
        effective, effective_zone = etc_localtime, load_zone(etc_localtime)
        if effective_zone is None:
            warns.append(f"/etc/localtime points to {etc_localtime!r}, which zoneinfo cannot load")
    else:
        source = "default" if etc_localtime is None else "/etc/localtime"
        effective, effective_zone = "UTC", load_zone("UTC")
        if etc_timezone:
            effective = etc_timezone if etc_localtime == "(copy)" else "UTC"
            effective_zone = load_zone(effective)
    if configured is None and etc_localtime not in (None, "(copy)") and etc_timezone:
        a, b = load_zone(etc_localtime or ""), load_zone(etc_timezone)
        if a is None or b is None or not same_behaviour(a, b, at):
            warns.append(f"/etc/localtime ({etc_localtime}) and /etc/timezone ({etc_timezone}) disagree")
    if expected:
        want = load_zone(expected)
        if want is None:
            warns.append(f"CLOCK_EXPECTED_TZ={expected!r} is not a known time zone")
        elif effective_zone is None or not same_behaviour(want, effective_zone, at):
            have = format_utc_offset(_offset(effective_zone, at)) if effective_zone else "POSIX rule"
            warns.append(f"expected zone {expected} ({format_utc_offset(_offset(want, at))}) "
                         f"but the effective zone is {effective} ({have})")
    system = any(Path(p).is_dir() for p in zoneinfo.TZPATH)
    count = len(zoneinfo.available_timezones())
    version = tzdata_version()
    if count == 0 and load_zone("Europe/Berlin") is None:
        fails.append("no time zone data: neither the tzdata wheel nor /usr/share/zoneinfo is available")
    status: Status = "fail" if fails else "warn" if warns else "pass"
    offset = format_utc_offset(_offset(effective_zone, at)) if effective_zone else "unknown"
    return TimezoneReport(status, configured, effective, source, valid, expected, etc_localtime,
                          etc_timezone, version, system, count, offset, tuple(fails + warns))


def _offset(zone: zoneinfo.ZoneInfo | None, at: datetime) -> float:
    if zone is None:
        return 0.0
    delta = at.astimezone(zone).utcoffset()
    return delta.total_seconds() if delta is not None else 0.0
