"""Every package of evolink imports only downward (api -> gateway -> wa -> signal/wire; clock, store never up).

The check is static: every ``import evolink.X`` / ``from evolink.X import ...`` anywhere in a module, including
imports inside functions, is read with ``ast``. A package missing from ``ALLOWED`` fails the test, so a new package
has to declare its place in the layering.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "evolink"

# package (or top-level module) -> the evolink packages it may import besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    "wire": frozenset(),
    "signal": frozenset({"wire"}),
    "clock": frozenset({"metrics"}),
    "metrics": frozenset(),
    "store": frozenset({"clock"}),
    "wa": frozenset({"wire", "signal", "clock"}),
    "sandbox": frozenset({"wire", "signal"}),
    "gateway": frozenset({"wa", "signal", "wire", "store", "clock", "metrics"}),
    "api": frozenset({"gateway", "wa", "signal", "wire", "store", "clock", "metrics", "sandbox", "client"}),
    "client": frozenset(),
    # entry points sit on top of everything
    "cli": frozenset({"api", "gateway", "wa", "signal", "wire", "store", "clock", "metrics", "sandbox",
                      "client", "doctor"}),
    "doctor": frozenset({"api", "gateway", "wa", "wire", "store", "clock", "metrics"}),
    "__main__": frozenset({"cli"}),
    "__init__": frozenset(),
}


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_packages(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "evolink" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_package_has_a_declared_layer() -> None:
    packages = {_package_of(p) for p in _modules()}
    undeclared = sorted(packages - ALLOWED.keys())
    assert not undeclared, f"declare the layer of {undeclared} in ALLOWED"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_downward(path: Path) -> None:
    own = _package_of(path)
    allowed = ALLOWED.get(own, frozenset())
    wrong = sorted((pkg, line) for pkg, line in _imported_packages(path) if pkg != own and pkg not in allowed)
    assert not wrong, f"{path.relative_to(SRC)} ({own}) imports upward/sideways: {wrong}"


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from evolink.api import app\n    import evolink.gateway.runtime\n")
    assert {p for p, _ in _imported_packages(sample)} == {"api", "gateway"}
