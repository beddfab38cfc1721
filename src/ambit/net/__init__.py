"""The asyncio edge: sockets, TLS transports, HBONE connections and pool, relays, drain."""
