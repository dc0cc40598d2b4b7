"""Web manager, client and `evolink link` tests: reuse the gateway tests' helpers and fakes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))
