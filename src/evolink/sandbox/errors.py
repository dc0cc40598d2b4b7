"""Typed errors of the sandbox control surface; the admin API turns them into JSON 4xx/5xx."""

from __future__ import annotations


class SandboxError(Exception):
    """Base of sandbox errors."""


class AdminError(SandboxError):
    """A control request was refused: HTTP ``status`` with ``{"error": error, "message": message}``."""

    def __init__(self, status: int, error: str, message: str = "") -> None:
        super().__init__(f"{status} {error}: {message}" if message else f"{status} {error}")
        self.status = status
        self.error = error
        self.message = message or error.replace("_", " ")
