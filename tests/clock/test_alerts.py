"""The Prometheus rules file is valid (promtool check rules) and behaves (promtool test rules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RULES = HERE.parents[1] / "deploy" / "prometheus" / "evolink-alerts.yml"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=HERE)


def test_promtool_check_rules() -> None:
    r = _run("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 7 rules found" in r.stdout


def test_promtool_unit_tests() -> None:
    r = _run("test", "rules", "evolink-alerts.test.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_alerts_reference_only_exported_metrics() -> None:
    import re

    from evolink import metrics

    exported = {m.name for m in metrics.REGISTRY.collect()}
    used = set(re.findall(r"\b(evolink_[a-z_]+)", RULES.read_text()))
    # Counters are exported as <name>_total; collect() reports the base name.
    missing = {u for u in used if u not in exported and u.removesuffix("_total") not in exported}
    assert not missing, missing
