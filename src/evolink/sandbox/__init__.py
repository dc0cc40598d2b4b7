"""Protocol-faithful WhatsApp-like server and simulated phones, built on evolink.wire (never on evolink.wa).

``Sandbox`` (server.py) is the entry point; ``SandboxConfig`` (config.py) holds every knob; see
docs/sandbox.md for the admin API contract.
"""

from evolink.sandbox.config import SandboxConfig
from evolink.sandbox.errors import AdminError
from evolink.sandbox.server import Sandbox

__all__ = ["AdminError", "Sandbox", "SandboxConfig"]
