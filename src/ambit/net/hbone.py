"""HBONE over asyncio: mTLS connections driving `protocol.hbone`, streams as `Duplex`, server and client.

TLS is `ambit.net.tls` (OpenSSL on the socket), not the event loop's memory-BIO transport. This
module is the package's one import point; the parts live beside it:

* `hbone_connection`: `HboneConnectionProtocol` (one TLS connection and its sans-IO core: peer
  identity, keepalive, first-request and idle timers, drain) and `HboneStream` (one tunnel as a
  `Duplex`, withholding flow-control credit while paused);
* `hbone_server`: `HboneServer` accepts connections and hands each well-formed CONNECT to a handler
  coroutine that decides (`InboundTunnel.reject(status)` / `.accept()`) and relays;
* `hbone_client`: `connect_hbone` opens a client connection; `HboneClientConnection.open_stream`
  sends CONNECT and waits for the answer.
"""

from __future__ import annotations

from ambit.net.hbone_client import HboneClientConnection, TunnelRejected, connect_hbone, finish_open
from ambit.net.hbone_connection import (
    HboneConnectionProtocol,
    HboneStream,
    PeerId,
    StreamRefused,
    Timeouts,
)
from ambit.net.hbone_server import HboneServer, InboundTunnel, TunnelHandler

__all__ = [
    "HboneClientConnection",
    "HboneConnectionProtocol",
    "HboneServer",
    "HboneStream",
    "InboundTunnel",
    "PeerId",
    "StreamRefused",
    "Timeouts",
    "TunnelHandler",
    "TunnelRejected",
    "connect_hbone",
    "finish_open",
]
