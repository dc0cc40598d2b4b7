"""evolink: a WhatsApp gateway, wire-compatible with Evolution API v2, whose device linking works first time."""

__version__ = "0.1.0"
