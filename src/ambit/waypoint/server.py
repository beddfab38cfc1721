"""The waypoint's HBONE listener (15008): terminate each CONNECT, find the protocol, serve it.

Each tunnel comes from a client ztunnel that presented the *client's* certificate, so the verified
peer identity is the original client's (the waypoint "knows the original client identity"); the
CONNECT authority is the original destination (``VIP:port`` or ``podIP:port``). The tunnel is
accepted at once (the waypoint answers HTTP errors itself), then:

* the protocol is the destination Service port's declaration when there is one (``appProtocol``, else
  the port name's prefix: ``http``, ``http2``, ``grpc``, ``tcp``...): a declared TCP port is relayed
  without reading a byte; a declared HTTP port is read as HTTP/2 when it starts with the HTTP/2
  preface (prior knowledge), else HTTP/1.1;
* undeclared: the first bytes are sniffed for at most ``sniff_timeout`` (default 0.5 s): the HTTP/2
  preface → HTTP/2, an HTTP/1 request line → HTTP/1.1, anything else — or nothing within the
  timeout, as with a server-first protocol — → opaque TCP (L4 policy only).
"""

from __future__ import annotations

import asyncio
import logging
import re

from ambit.net.drain import Drain
from ambit.net.duplex import Duplex, StreamAborted
from ambit.net.hbone_server import InboundTunnel
from ambit.protocol.authority import parse_authority
from ambit.waypoint.exchange import Downstream
from ambit.waypoint.h2_server import serve_h2
from ambit.waypoint.http1_server import serve_http1
from ambit.waypoint.router import WaypointRouter, declared_protocol, relay_tcp, service_port

log = logging.getLogger(__name__)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_SNIFF_TIMEOUT = 0.5
_REQUEST_LINE = re.compile(rb"^[A-Z]{1,20} ")
_METHOD_PREFIX = re.compile(rb"^[A-Z]{1,20}$")

HTTP1, H2, TCP = "http1", "h2", "tcp"


def sniff(data: bytes) -> str | None:
    """The protocol the first bytes of a connection show, or None while they cannot tell yet."""
    if data.startswith(H2_PREFACE):
        return H2
    if H2_PREFACE.startswith(data):
        return None  # a prefix of the preface (also of "PRI ..." as an HTTP/1 method): wait
    if _REQUEST_LINE.match(data):
        return HTTP1
    if _METHOD_PREFIX.match(data):
        return None
    return TCP


class TunnelHandler:
    """Runs one HBONE CONNECT through the waypoint."""

    def __init__(self, router: WaypointRouter, drain: Drain, *, sniff_timeout: float = DEFAULT_SNIFF_TIMEOUT):
        self.router = router
        self.drain = drain
        self.sniff_timeout = sniff_timeout

    async def __call__(self, tunnel: InboundTunnel) -> None:
        peer = tunnel.peer_identity
        address = tunnel.peer_address
        downstream = Downstream(
            peer_identity=str(peer) if peer is not None else "",
            peer_ip=address[0] if address is not None else "",
            target=tunnel.request.authority,
        )
        stream = tunnel.accept()
        try:
            protocol, initial = await self._detect(stream, downstream.target)
            if protocol == H2:
                await serve_h2(stream, downstream, self.router.handle, initial=initial, drain=self.drain)
            elif protocol == HTTP1:
                await serve_http1(stream, downstream, self.router.handle, initial=initial, drain=self.drain)
            else:
                await relay_tcp(self.router, stream, downstream, initial)
        except (StreamAborted, ConnectionError) as exc:
            log.debug("tunnel %s from %s ended: %s", downstream.target, downstream.peer_identity, exc)
        finally:
            if not stream.closed:
                stream.abort()

    async def _detect(self, stream: Duplex, target: str) -> tuple[str, bytes]:
        declared = ""
        try:
            ip, port = parse_authority(target)
        except ValueError:
            port = 0
            ip = ""
        if ip:
            snapshot = self.router.store.current
            service = snapshot.find_service_by_vip(ip)
            sp = service_port(service, port)
            if sp is not None and (sp.app_protocol.lower() == "tcp" or sp.name.lower().startswith("tcp")):
                return TCP, b""
            declared = declared_protocol(sp)
        data = b""
        loop = asyncio.get_running_loop()
        deadline = None if declared else loop.time() + self.sniff_timeout
        while True:
            found = sniff(data)
            if found is not None:
                if declared and found == TCP:
                    return HTTP1, data  # declared HTTP: let the HTTP/1.1 parser answer 400
                return found, data
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return TCP, data
            try:
                chunk = await asyncio.wait_for(stream.read(4096), remaining)
            except TimeoutError:
                return TCP, data
            if not chunk:
                return (HTTP1 if declared else TCP), data
            data += chunk
