"""The two proxies of ``ambit bench hbone``, built from ambit's own data-path primitives.

Proxy A accepts plain TCP from the load client and crosses *the hop* to proxy B; proxy B ends the
hop and dials the target. One listening port per target port (echo, sink) so a plain relay needs
no routing header; over HBONE the target travels in the CONNECT ``:authority`` instead. The hop is:

* ``tcp``: one plain TCP connection per client connection;
* ``tls``: one mutual TLS 1.3 connection per client connection (``ambit.identity.tls`` contexts);
* ``hbone``: one HBONE CONNECT stream per client connection over ``ambit.net.pool.HbonePool``
  (A) to an ``ambit.net.hbone.HboneServer`` (B) running the test forwarding handler.

Every byte moves through ``ambit.net.duplex.TcpDuplex`` / ``HboneStream`` and ``relay``.
Run as ``python -m ambit.bench.proxies``; the configuration's ``side`` is ``a`` or ``b``;
announces ``{"ports": [...]}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import Awaitable, Callable

from ambit.bench.child import JsonObject, Stop, credential_from_json, serve
from ambit.identity.tls import client_context, server_context
from ambit.model.identity import Identity, parse_spiffe_id
from ambit.net.duplex import Duplex, TcpDuplex, relay
from ambit.net.hbone import HboneServer
from ambit.net.pool import HbonePool, PoolKey, tls_connector
from ambit.net.tasks import spawn
from ambit.protocol.hbone import HboneSettings, format_authority
from ambit.testing.hbone_env import forwarding_handler, tcp_connect

HOST = "127.0.0.1"
Dial = Callable[[], Awaitable[Duplex]]


class Inbound(TcpDuplex):
    """An accepted connection that dials its upstream and relays until both sides are done."""

    def __init__(self, dial: Dial) -> None:
        super().__init__()
        self._dial = dial

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        spawn(self._run(), name="bench-relay")

    async def _run(self) -> None:
        try:
            upstream = await self._dial()
        except (OSError, ConnectionError) as exc:
            self.abort(exc)
            return
        await relay(self, upstream)


def hbone_settings(frame: int | None, *, client_side: bool) -> HboneSettings | None:
    """None (ambit's defaults) unless a send frame size is forced."""
    if frame is None:
        return None
    base = HboneSettings.client() if client_side else HboneSettings.server()
    return dataclasses.replace(base, send_frame_size=frame)


def tcp_dial(port: int, context: ssl.SSLContext | None = None) -> Dial:
    """Dial HOST:port over plain TCP, or over TLS when `context` is given."""

    async def dial() -> Duplex:
        if context is None:
            return await tcp_connect(HOST, port)
        loop = asyncio.get_running_loop()
        _t, proto = await loop.create_connection(TcpDuplex, HOST, port, ssl=context, server_hostname="")
        return proto

    return dial


async def listen(dials: list[Dial], context: ssl.SSLContext | None = None) -> list[asyncio.Server]:
    """One listening port per dial, each accepted connection relayed to what its dial returns."""
    loop = asyncio.get_running_loop()
    servers = []
    for dial in dials:

        def inbound(d: Dial = dial) -> Inbound:
            return Inbound(d)

        servers.append(await loop.create_server(inbound, HOST, 0, ssl=context))
    return servers


def ports_of(servers: list[asyncio.Server]) -> list[int]:
    return [int(s.sockets[0].getsockname()[1]) for s in servers]


async def close_all(servers: list[asyncio.Server]) -> None:
    for server in servers:
        server.close()


async def start_a(config: JsonObject) -> tuple[JsonObject, Stop]:
    kind, targets, b_ports = str(config["kind"]), list(config["targets"]), list(config["b_ports"])
    dials: list[Dial]
    cert, bundle = credential_from_json(config["credential"])
    pool: HbonePool | None = None
    if kind == "tcp":
        dials = [tcp_dial(int(p)) for p in b_ports]
    elif kind == "tls":
        ctx = client_context(cert, bundle, alpn=())
        dials = [tcp_dial(int(p), ctx) for p in b_ports]
    elif kind == "hbone":
        source, peer = cert.identity, parse_spiffe_id(str(config["peer"]))
        if not isinstance(source, Identity):
            raise SystemExit("proxy A needs a workload identity")
        hctx = client_context(cert, bundle)
        settings = hbone_settings(config.get("frame"), client_side=True)
        hbone_pool = pool = HbonePool(tls_connector(lambda _src: hctx, settings=settings))
        key = PoolKey(source, peer, (HOST, int(b_ports[0])))

        def stream_to(target: int) -> Dial:
            async def dial() -> Duplex:
                return await hbone_pool.open_stream(key, format_authority(HOST, target))

            return dial

        dials = [stream_to(int(t)) for t in targets]
    else:
        raise SystemExit(f"unknown hop kind {kind!r}")
    servers = await listen(dials)

    async def stop() -> None:
        await close_all(servers)
        if pool is not None:
            await pool.close()

    return {"ports": ports_of(servers)}, stop


async def start_b(config: JsonObject) -> tuple[JsonObject, Stop]:
    kind, targets = str(config["kind"]), [int(t) for t in config["targets"]]
    cert, bundle = credential_from_json(config["credential"])
    if kind == "hbone":
        server = HboneServer(
            server_context(cert, bundle),
            forwarding_handler(),
            trust_domain=cert.identity.trust_domain,
            settings=hbone_settings(config.get("frame"), client_side=False),
        )
        _host, port = await server.start(HOST, 0)
        return {"ports": [port]}, server.close
    if kind not in ("tcp", "tls"):
        raise SystemExit(f"unknown hop kind {kind!r}")
    ssl_ctx = server_context(cert, bundle, alpn=()) if kind == "tls" else None
    servers = await listen([tcp_dial(t) for t in targets], ssl_ctx)

    async def stop() -> None:
        await close_all(servers)

    return {"ports": ports_of(servers)}, stop


async def start(config: JsonObject) -> tuple[JsonObject, Stop]:
    return await (start_a(config) if config.get("side") == "a" else start_b(config))


if __name__ == "__main__":
    serve(start)
