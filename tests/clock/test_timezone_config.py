"""Timezone checks (zoneinfo validation, /etc consistency, expected zone) and config parsing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clock_helpers import HttpDateServer

from evolink.clock.config import ClockConfig, ClockConfigError, NtpServer, SkewPolicy, parse_servers
from evolink.clock.httpdate import measure_http_date
from evolink.clock.timezone import check_timezone, format_utc_offset, zones_with_offset

NOW = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)


def _etc(tmp: Path, localtime: str | None, timezone: str | None) -> Path:
    etc = tmp / "etc"
    etc.mkdir()
    if localtime:
        (etc / "localtime").symlink_to(f"/usr/share/zoneinfo/{localtime}")
    if timezone:
        (etc / "timezone").write_text(timezone + "\n")
    return etc


def test_tz_typo_is_flagged_with_a_suggestion(tmp_path: Path) -> None:
    r = check_timezone({"TZ": "Europe/Berlni"}, etc=_etc(tmp_path, "Etc/UTC", "Etc/UTC"), now=NOW)
    assert r.status == "warn" and not r.valid and r.effective == "UTC"
    assert r.problems == ("TZ='Europe/Berlni' is not a known time zone: glibc silently uses UTC "
                          "(shown as 'Europe'); did you mean 'Europe/Berlin'?",)


@pytest.mark.parametrize(("tz", "effective"), [
    ("Europe/Berlin", "Europe/Berlin"), (":America/Sao_Paulo", "America/Sao_Paulo"), ("", "UTC"),
    ("EST5EDT,M3.2.0,M11.1.0", "EST5EDT,M3.2.0,M11.1.0"), ("<-03>3", "<-03>3"),
    pytest.param("/usr/share/zoneinfo/Asia/Tokyo", "Asia/Tokyo", marks=pytest.mark.skipif(
        not Path("/usr/share/zoneinfo/Asia/Tokyo").is_file(), reason="no system zoneinfo")),
])
def test_valid_tz_values_pass(tmp_path: Path, tz: str, effective: str) -> None:
    r = check_timezone({"TZ": tz}, etc=_etc(tmp_path, "Etc/UTC", None), now=NOW)
    assert (r.status, r.valid, r.effective, r.source) == ("pass", True, effective, "TZ"), r.problems


def test_missing_tz_file_is_flagged(tmp_path: Path) -> None:
    r = check_timezone({"TZ": ":/nope/zone"}, etc=_etc(tmp_path, None, None), now=NOW)
    assert r.status == "warn" and not r.valid and "missing file" in r.problems[0]


def test_etc_localtime_and_timezone_disagree(tmp_path: Path) -> None:
    r = check_timezone({}, etc=_etc(tmp_path, "Europe/Berlin", "America/Sao_Paulo"), now=NOW)
    assert r.source == "/etc/localtime" and r.effective == "Europe/Berlin"
    assert r.status == "warn" and "disagree" in r.problems[0]


def test_aliases_compare_by_behaviour(tmp_path: Path) -> None:
    r = check_timezone({}, expected="Asia/Calcutta", etc=_etc(tmp_path, "Asia/Kolkata", "Asia/Calcutta"),
                       now=NOW)
    assert r.status == "pass", r.problems
    assert r.utc_offset == "UTC+05:30"


def test_expected_zone_mismatch(tmp_path: Path) -> None:
    r = check_timezone({"TZ": "UTC"}, expected="America/Sao_Paulo", etc=_etc(tmp_path, None, None), now=NOW)
    assert r.status == "warn"
    assert r.problems == ("expected zone America/Sao_Paulo (UTC−03:00) but the effective zone is UTC (UTC+00:00)",)


def test_tzdata_present() -> None:
    r = check_timezone({"TZ": "UTC"}, now=NOW)
    assert r.tzdata_version and r.zones_available > 300


def test_zones_with_offset() -> None:
    assert zones_with_offset(-3 * 3600, NOW)[0] == "America/Sao_Paulo"
    assert "Asia/Kolkata" in zones_with_offset(5.5 * 3600, NOW)
    assert format_utc_offset(-3 * 3600) == "UTC−03:00" and format_utc_offset(20700) == "UTC+05:45"


def test_config_from_env_defaults_and_values() -> None:
    c = ClockConfig.from_env({})
    assert c.skew_policy is SkewPolicy.COMPENSATE and c.max_skew_seconds == 30.0
    assert len(c.ntp_servers) >= 3 and c.upstream_http_url == "https://web.whatsapp.com"
    c = ClockConfig.from_env({"CLOCK_NTP_SERVERS": "a.example, b.example:1123 [::1]:5123",
                              "CLOCK_SKEW_POLICY": "REFUSE", "CLOCK_MAX_SKEW_SECONDS": "0.5",
                              "CLOCK_UPSTREAM_HTTP_URL": "off", "CLOCK_EXPECTED_TZ": "Europe/Berlin"})
    assert c.ntp_servers == (NtpServer("a.example"), NtpServer("b.example", 1123), NtpServer("::1", 5123))
    assert c.skew_policy is SkewPolicy.REFUSE and c.max_skew_seconds == 0.5 and c.warn_skew_seconds == 0.5
    assert c.upstream_http_url is None and c.expected_tz == "Europe/Berlin"
    assert str(NtpServer("::1", 5123)) == "[::1]:5123"


@pytest.mark.parametrize(("env", "var"), [
    ({"CLOCK_SKEW_POLICY": "ignore"}, "CLOCK_SKEW_POLICY"),
    ({"CLOCK_MAX_SKEW_SECONDS": "thirty"}, "CLOCK_MAX_SKEW_SECONDS"),
    ({"CLOCK_MAX_SKEW_SECONDS": "-1"}, "CLOCK_MAX_SKEW_SECONDS"),
    ({"CLOCK_CHECK_INTERVAL_SECONDS": "nan"}, "CLOCK_CHECK_INTERVAL_SECONDS"),
    ({"CLOCK_NTP_SERVERS": "host:99999"}, "CLOCK_NTP_SERVERS"),
    ({"CLOCK_NTP_SERVERS": "http://x/"}, "CLOCK_NTP_SERVERS"),
    ({"CLOCK_EXPECTED_TZ": "Europe/Berlni"}, "CLOCK_EXPECTED_TZ"),
    ({"CLOCK_UPSTREAM_HTTP_URL": "web.whatsapp.com"}, "CLOCK_UPSTREAM_HTTP_URL"),
    ({"CLOCK_NTP_PACKETS": "20"}, "CLOCK_NTP_PACKETS"),
])
def test_bad_config_names_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ClockConfigError) as err:
        ClockConfig.from_env(env)
    assert str(err.value).startswith(f"{var}:")


def test_parse_servers_rejects_empty() -> None:
    with pytest.raises(ClockConfigError):
        parse_servers(" , ")


async def test_http_date_measurement_bounds_the_offset() -> None:
    server = HttpDateServer(skew=-300.0)
    url = await server.start()
    try:
        r = await measure_http_date(url, http_timeout=2.0)
        shifted = await measure_http_date(url, http_timeout=2.0, wall=lambda: time.time() - 300.0)
    finally:
        await server.close()
    assert r.ok and r.sample is not None and r.rtt is not None and not r.tls
    assert abs(r.sample.offset - (-300.0)) <= r.sample.uncertainty + 0.01
    assert r.sample.uncertainty == pytest.approx(0.5 + r.rtt / 2)
    assert shifted.sample is not None and abs(shifted.sample.offset) <= 0.6


async def test_http_date_errors_are_typed() -> None:
    from clock_helpers import unused_udp_port

    r = await measure_http_date(f"http://127.0.0.1:{unused_udp_port()}/", http_timeout=1.0)
    assert not r.ok and r.error_kind == "connect" and r.sample is None
