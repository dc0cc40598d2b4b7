"""The client engine: asyncio driver over evolink.wire (pairing, login, keepalive, reconnect)."""
