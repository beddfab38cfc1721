"""The built-in sample app: an HTTP echo and a TCP echo, one asyncio process serving several ports.

A container with no ``command`` runs this app on its ``containerPort``s (its ``args`` are ignored);
the runtime decides which ports are TCP (Service port name or ``appProtocol`` says TCP) and passes
``--http-port``/``--tcp-port`` lists. Identity comes from the options, falling back to the
environment (``POD_NAME``, ``NODE_NAME``, ``POD_NAMESPACE``, ``SERVICE_VERSION``).

HTTP (aiohttp's low-level server, HTTP/1.1 with keep-alive): any method and path answers 200 with a
JSON echo ``{"method", "path", "query", "headers", "pod", "node", "namespace", "version", "peer",
"host", "local", "port", "body_bytes"}`` where ``peer`` is the ``ip:port`` the app saw (so a test can
tell whether the mesh preserved the source address). Paths with a meaning in the Istio samples:

* ``/hello`` (helloworld): text ``Hello version: <version>, instance: <pod>``;
* ``/headers``, ``/ip`` (``{"origin": ip}`` plus the echo), ``/status/<code>`` (answers that
  status, 200..599), ``/status/<code>:<weight>,<code>:<weight>,...`` (each request answers one of
  the codes, drawn at random by weight; a code without ``:<weight>`` weighs 1, so ``/status/200,503``
  is an even split; the app's own generator, seeded by ``SampleConfig.seed``), ``/delay/<seconds>``
  (sleeps, at most 10 s) (httpbin);
* ``/healthz``, ``/ready``, ``/health``: 200 ``{"status": "ok"}``;
* with ``SAMPLE_FAIL_STATUSES`` set (e.g. ``200:0.5,503:0.5``), every path but the health paths first
  draws a status from that list and answers it when it is not 200: a backend that fails by itself;
* ``/ws`` with ``Upgrade: websocket``: a WebSocket echo (each text message answered ``<pod>: <text>``);
* everything else, ``/`` and ``/productpage`` included: 200 and the echo.

A request body is read and counted (``body_bytes``), never returned.

TCP: bytes are echoed back as they arrive. With ``tcp_prefix`` (the Istio tcp-echo server's
second argument, e.g. ``hello``), each line is answered ``<prefix> <line>`` instead.

Graceful stop (SIGTERM/SIGINT in `serve`): the listeners close at once; HTTP requests in progress and
open TCP echo connections get up to ``grace`` seconds (default 5) to finish; idle keep-alive
connections close at once; then the process exits 0.

Every HTTP request and every closed TCP connection logs one compact line to stdout, flushed
(``--quiet`` turns them off). The first line, once every port listens, is
``ambit-sample ready pod=<pod> node=<node> http=<p1>,<p2> tcp=<p3>`` with the bound port numbers
(port 0 in the options means any free port).

Run it as ``ambit app sample ...`` or, without importing the rest of ambit's CLI,
``python -m ambit.apps.sample ...`` (same options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO, cast

from aiohttp import web

MAX_DELAY_SECONDS = 10.0
DEFAULT_GRACE_SECONDS = 5.0
_MAX_PREFIX_LINE = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_HEALTH_PATHS = frozenset({"/healthz", "/ready", "/health"})
_STATUS_ERROR = (
    "status must be an integer 200..599, or a list <code>[:<weight>],... of them"
    " with weights >= 0, not all zero"
)
_BACKLOG = 1024  # a load test's burst of new connections after a stall must not overflow the accept queue


@dataclass(frozen=True, slots=True)
class SampleConfig:
    """What the sample app serves and who it says it is."""

    http_ports: tuple[int, ...] = ()
    tcp_ports: tuple[int, ...] = ()
    pod: str = ""
    node: str = ""
    namespace: str = ""
    version: str = ""
    tcp_prefix: str | None = None
    bind: str = "0.0.0.0"
    log_requests: bool = True
    grace: float = DEFAULT_GRACE_SECONDS
    seed: int | None = None  # of the generator that draws weighted ``/status/`` codes (None: from the OS)
    # a pod that fails by itself: every request but the health paths answers a status drawn from this
    # weighted list (``/status/``'s form, e.g. ``200:0.5,503:0.5``); 200 answers as usual
    fail_statuses: str = ""

    def resolved(self, env: Mapping[str, str] | None = None) -> SampleConfig:
        """This config with empty identity fields filled from the environment.

        ``pod`` falls back to ``POD_NAME``, then ``HOSTNAME``, then the host name; ``node`` to
        ``NODE_NAME``; ``namespace`` to ``POD_NAMESPACE``, then ``default``; ``version`` to
        ``SERVICE_VERSION``, then ``unknown``; ``fail_statuses`` to ``SAMPLE_FAIL_STATUSES``.
        """
        env = os.environ if env is None else env
        return SampleConfig(
            http_ports=self.http_ports,
            tcp_ports=self.tcp_ports,
            pod=self.pod or env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname(),
            node=self.node or env.get("NODE_NAME", ""),
            namespace=self.namespace or env.get("POD_NAMESPACE") or "default",
            version=self.version or env.get("SERVICE_VERSION") or "unknown",
            tcp_prefix=self.tcp_prefix,
            bind=self.bind,
            log_requests=self.log_requests,
            grace=self.grace,
            seed=self.seed,
            fail_statuses=self.fail_statuses or env.get("SAMPLE_FAIL_STATUSES", ""),
        )

    def validate(self) -> None:
        """Raise ValueError when the config cannot be served."""
        ports = [*self.http_ports, *self.tcp_ports]
        if not ports:
            raise ValueError("the sample app needs at least one --http-port or --tcp-port")
        for port in ports:
            if not 0 <= port <= 65535:
                raise ValueError(f"port {port} is out of range")
        fixed = [p for p in ports if p != 0]
        if len(fixed) != len(set(fixed)):
            raise ValueError(f"a port is listed twice: {ports}")
        if self.grace < 0:
            raise ValueError("grace must be >= 0")
        if self.fail_statuses and parse_weighted_statuses(self.fail_statuses) is None:
            raise ValueError(
                f"fail statuses {self.fail_statuses!r} are not a weighted status list (200:0.5,503:0.5)"
            )


def format_addr(addr: Any) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6) from a socket address tuple; ``""`` if unknown."""
    if not isinstance(addr, tuple) or len(addr) < 2:
        return ""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def parse_status(text: str) -> int | None:
    """The status code of ``/status/<code>``, or None when it is not a final status (200..599)."""
    try:
        code = int(text)
    except ValueError:
        return None
    return code if 200 <= code <= 599 else None


def parse_weighted_statuses(text: str) -> list[tuple[int, float]] | None:
    """The ``(code, weight)`` choices of ``/status/<choices>``, or None when malformed.

    `text` is ``<code>`` or a comma-separated list of ``<code>`` or ``<code>:<weight>`` (a code
    without a weight weighs 1), as httpbin's ``/status/200:0.5,503:0.5``. Codes are 200..599 (as
    `parse_status` reads them); weights are finite numbers >= 0, not all zero. A code may repeat (its
    weights add up when drawn).
    """
    choices: list[tuple[int, float]] = []
    for part in text.split(","):
        code_text, colon, weight_text = part.partition(":")
        code = parse_status(code_text)
        if code is None:
            return None
        weight = 1.0
        if colon:
            try:
                weight = float(weight_text)
            except ValueError:
                return None
            if not math.isfinite(weight) or weight < 0:
                return None
        choices.append((code, weight))
    total = sum(weight for _, weight in choices)  # inf when finite weights overflow
    if not (0 < total < math.inf):
        return None
    return choices


def choose_status(choices: Sequence[tuple[int, float]], rng: random.Random) -> int:
    """One code of `choices` (see `parse_weighted_statuses`) drawn by weight with `rng`.

    A single choice is returned without drawing, so ``/status/<code>`` leaves `rng` alone.
    """
    if len(choices) == 1:
        return choices[0][0]
    codes = [code for code, _ in choices]
    weights = [weight for _, weight in choices]
    return rng.choices(codes, weights)[0]


def parse_delay(text: str) -> float | None:
    """The seconds of ``/delay/<seconds>``, clamped to [0, MAX_DELAY_SECONDS]; None if not a number."""
    try:
        seconds = float(text)
    except ValueError:
        return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_DELAY_SECONDS)


def prefix_lines(prefix: bytes, buffer: bytes, *, final: bool = False) -> tuple[bytes, bytes]:
    """Split `buffer` into complete lines answered ``<prefix> <line>`` and the unfinished rest.

    With `final` (the peer finished sending) or a rest longer than 64 KiB, the rest is answered too.
    Returns (reply, rest).
    """
    out: list[bytes] = []
    start = 0
    while (end := buffer.find(b"\n", start)) >= 0:
        out.append(prefix + b" " + buffer[start : end + 1])
        start = end + 1
    rest = buffer[start:]
    if rest and (final or len(rest) > _MAX_PREFIX_LINE):
        out.append(prefix + b" " + rest)
        rest = b""
    return b"".join(out), rest


def _listen(bind: str, port: int) -> socket.socket:
    if ":" in bind:
        dual = bind == "::" and socket.has_dualstack_ipv6()
        return socket.create_server(
            (bind, port), family=socket.AF_INET6, dualstack_ipv6=dual, backlog=_BACKLOG
        )
    return socket.create_server((bind, port), backlog=_BACKLOG)


class _RequestLog:
    """One flushed line per event on `out` (or nothing)."""

    def __init__(self, out: TextIO | None) -> None:
        self._out = out
        self.enabled = out is not None

    def line(self, text: str) -> None:
        if self._out is None:
            return
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        with contextlib.suppress(OSError, ValueError):
            self._out.write(f"{stamp} {text}\n")
            self._out.flush()


class _EchoProtocol(asyncio.Protocol):
    """One TCP echo connection; reading pauses while the peer does not take the echo."""

    def __init__(self, app: SampleApp, port: int) -> None:
        self._app = app
        self._port = port
        self._transport: asyncio.Transport | None = None
        self._prefix = None if app.config.tcp_prefix is None else app.config.tcp_prefix.encode()
        self._rest = b""
        self._peer = ""
        self._opened = time.monotonic()
        self.bytes_in = 0
        self.bytes_out = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a registered subclass
        self._peer = format_addr(transport.get_extra_info("peername"))
        self._app._tcp_open(self)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self._prefix is None:
            self._write(data)
            return
        reply, self._rest = prefix_lines(self._prefix, self._rest + data)
        self._write(reply)

    def eof_received(self) -> bool:
        if self._prefix is not None and self._rest:
            reply, self._rest = prefix_lines(self._prefix, self._rest, final=True)
            self._write(reply)
        return False  # close once the echo is flushed

    def _write(self, data: bytes) -> None:
        if data and self._transport is not None:
            self.bytes_out += len(data)
            self._transport.write(data)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        ms = (time.monotonic() - self._opened) * 1000
        how = "closed" if exc is None else f"lost ({type(exc).__name__})"
        self._app._log.line(
            f"tcp :{self._port} {self._peer} {how} in={self.bytes_in} out={self.bytes_out} {ms:.1f}ms"
        )
        self._app._tcp_closed(self)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


@dataclass(slots=True)
class _Listeners:
    http: list[socket.socket] = field(default_factory=list)
    tcp: list[asyncio.Server] = field(default_factory=list)


class SampleApp:
    """The sample app inside a running event loop: `start`, then `stop` (or ``async with``)."""

    def __init__(self, config: SampleConfig, *, out: TextIO | None = None) -> None:
        config.validate()
        self.config = config
        self._log = _RequestLog(out if config.log_requests else None)
        self._runner: web.ServerRunner | None = None
        self._listeners = _Listeners()
        self.http_ports: list[int] = []
        self.tcp_ports: list[int] = []
        self._connections: set[_EchoProtocol] = set()
        self._no_connections = asyncio.Event()
        self._no_connections.set()
        self._stopped = False
        self._rng = random.Random(config.seed)  # not for security: picks weighted /status/ codes
        self._fail_choices = parse_weighted_statuses(config.fail_statuses) if config.fail_statuses else None

    async def __aenter__(self) -> SampleApp:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on every port; on failure nothing stays open."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.config.http_ports:
            server = web.Server(self._handle, access_log=None)
            self._runner = web.ServerRunner(server, shutdown_timeout=self.config.grace)
            await self._runner.setup()
            for port in self.config.http_ports:
                sock = _listen(self.config.bind, port)
                self._listeners.http.append(sock)
                self.http_ports.append(sock.getsockname()[1])
                await web.SockSite(self._runner, sock, backlog=_BACKLOG).start()
        for port in self.config.tcp_ports:
            sock = _listen(self.config.bind, port)
            bound = sock.getsockname()[1]
            try:
                tcp = await loop.create_server(
                    functools.partial(_EchoProtocol, self, bound), sock=sock, backlog=_BACKLOG
                )
            except BaseException:
                sock.close()
                raise
            self._listeners.tcp.append(tcp)
            self.tcp_ports.append(bound)

    def ready_line(self) -> str:
        """The line `serve` prints once every port listens."""
        http = ",".join(map(str, self.http_ports))
        tcp = ",".join(map(str, self.tcp_ports))
        return f"ambit-sample ready pod={self.config.pod} node={self.config.node} http={http} tcp={tcp}"

    async def stop(self) -> None:
        """Stop listening, give requests and TCP connections `grace` seconds, then close the rest."""
        if self._stopped:
            return
        self._stopped = True
        for tcp in self._listeners.tcp:
            tcp.close()
        await asyncio.gather(self._stop_http(), self._stop_tcp())

    async def _stop_http(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        for sock in self._listeners.http:
            sock.close()

    async def _stop_tcp(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.grace):
                await self._no_connections.wait()
        for conn in list(self._connections):
            conn.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._no_connections.wait()
        for conn in list(self._connections):
            conn.abort()
        for tcp in self._listeners.tcp:
            await tcp.wait_closed()
        await asyncio.sleep(0)  # let the aborted transports run connection_lost

    def _tcp_open(self, conn: _EchoProtocol) -> None:
        self._connections.add(conn)
        self._no_connections.clear()

    def _tcp_closed(self, conn: _EchoProtocol) -> None:
        self._connections.discard(conn)
        if not self._connections:
            self._no_connections.set()

    # HTTP

    def echo(self, request: web.BaseRequest, body_bytes: int) -> dict[str, Any]:
        """The JSON echo of `request` as this app saw it."""
        transport = request.transport
        peer = format_addr(transport.get_extra_info("peername")) if transport else ""
        local = transport.get_extra_info("sockname") if transport else None
        headers = {key: ", ".join(request.headers.getall(key)) for key in request.headers}
        return {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": headers,
            "pod": self.config.pod,
            "node": self.config.node,
            "namespace": self.config.namespace,
            "version": self.config.version,
            "peer": peer,
            "host": request.host,
            "local": format_addr(local),
            "port": local[1] if isinstance(local, tuple) and len(local) >= 2 else None,
            "body_bytes": body_bytes,
        }

    async def _websocket_echo(self, request: web.BaseRequest) -> web.StreamResponse:
        """``/ws`` with an Upgrade: a WebSocket that answers each message with ``<pod>: <message>``."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == web.WSMsgType.TEXT:
                await ws.send_str(f"{self.config.pod}: {message.data}")
            elif message.type == web.WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket_echo(request)
        started = time.monotonic()
        body_bytes = 0
        async for chunk in request.content.iter_any():
            body_bytes += len(chunk)
        response = await self._respond(request, body_bytes)
        if self._log.enabled:
            transport = request.transport
            peer = format_addr(transport.get_extra_info("peername")) if transport else "-"
            local = transport.get_extra_info("sockname") if transport else None
            port = local[1] if isinstance(local, tuple) else "?"
            ms = (time.monotonic() - started) * 1000
            what = f"{request.method} {request.path_qs} {response.status}"
            self._log.line(f"http :{port} {peer} {what} {ms:.1f}ms")
        return response

    async def _respond(self, request: web.BaseRequest, body_bytes: int) -> web.StreamResponse:
        path = request.path
        if self._fail_choices is not None and path not in _HEALTH_PATHS:  # fails by itself
            status = choose_status(self._fail_choices, self._rng)
            if status != 200:
                return _json({"status": status, "pod": self.config.pod}, status=status)
        if path == "/hello":
            return web.Response(text=f"Hello version: {self.config.version}, instance: {self.config.pod}\n")
        if path in _HEALTH_PATHS:
            return _json({"status": "ok", "pod": self.config.pod})
        echo = self.echo(request, body_bytes)
        if path == "/ip":
            return _json({"origin": echo["peer"].rsplit(":", 1)[0].strip("[]"), **echo})
        if path.startswith("/status/"):
            choices = parse_weighted_statuses(path.removeprefix("/status/"))
            if choices is None:
                return _json({"error": _STATUS_ERROR, **echo}, status=400)
            status = choose_status(choices, self._rng)
            if status in _NO_BODY_STATUSES:
                return web.Response(status=status)
            return _json(echo, status=status)
        if path.startswith("/delay/"):
            seconds = parse_delay(path.removeprefix("/delay/"))
            if seconds is None:
                return _json({"error": "delay must be a number of seconds", **echo}, status=400)
            await asyncio.sleep(seconds)
            return _json({"delay": seconds, **echo})
        return _json(echo)


def _json(body: Mapping[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body, separators=(",", ":")).encode(), content_type="application/json"
    )


async def serve(config: SampleConfig, *, out: TextIO | None = None) -> None:
    """Run the app until SIGTERM or SIGINT, then stop gracefully (see the module docstring)."""
    out = sys.stdout if out is None else out
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with SampleApp(config, out=out) as app:
            out.write(app.ready_line() + "\n")
            out.flush()
            await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def run(config: SampleConfig) -> None:
    """Resolve identity from the environment and serve under uvloop until signalled."""
    import uvloop

    uvloop.run(serve(config.resolved()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ambit.apps.sample", description=__doc__.split("\n")[0])
    parser.add_argument("--http-port", type=int, action="append", default=[], help="HTTP echo port")
    parser.add_argument("--tcp-port", type=int, action="append", default=[], help="TCP echo port")
    parser.add_argument("--pod", default="", help="pod name [$POD_NAME]")
    parser.add_argument("--node", default="", help="node name [$NODE_NAME]")
    parser.add_argument("--namespace", default="", help="namespace [$POD_NAMESPACE]")
    parser.add_argument("--version", default="", help="version reported by /hello [$SERVICE_VERSION]")
    parser.add_argument("--tcp-prefix", default=None, help="answer each TCP line '<prefix> <line>'")
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE_SECONDS, help="seconds to finish work")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> SampleConfig:
    args = build_parser().parse_args(argv)
    return SampleConfig(
        http_ports=tuple(args.http_port),
        tcp_ports=tuple(args.tcp_port),
        pod=args.pod,
        node=args.node,
        namespace=args.namespace,
        version=args.version,
        tcp_prefix=args.tcp_prefix,
        bind=args.bind,
        log_requests=not args.quiet,
        grace=args.grace,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = config_from_args(argv)
        config.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
