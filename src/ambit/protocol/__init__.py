"""Sans-IO protocol cores: bytes and events in, bytes and events out. No sockets, no asyncio."""
