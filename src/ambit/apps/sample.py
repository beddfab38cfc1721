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

Graceful stop (SIGTERM/SIGINT in `serve`): the app drains (`SampleApp.drain`), then stops. Kubernetes
takes a deleted pod's endpoints out of every proxy before it sends SIGTERM, but clients still hold
kept-alive connections to the pod, and a request can be on its way on one just as the server closes
it: the client then gets a reset although the server looked idle (the keep-alive race). Closing the
listeners at once also refuses a connection that races in. So for a rollout or a scale-down under
load to lose no request, during the drain:

* the listeners stay open, and a request that still arrives, on a new or a kept-alive connection, is
  served as usual, except that every response from the start of the drain carries
  ``Connection: close`` and its connection closes after it: each client learns in-band to go elsewhere;
* an HTTP connection idle between requests (none in progress, nothing of a next one received) for
  ``drain_idle`` seconds (default 1) counted from the start of the drain is closed by the app; a request
  in progress or partly received is never cut; WebSockets get a close frame 1001 (going away) at once;
* TCP echo connections keep echoing; one that has had no bytes (and, with ``tcp_prefix``, holds no
  unfinished line) for ``drain_idle`` seconds is closed (FIN); new ones are served the same way;
* the drain ends once no connection of either kind is open and none has opened for ``drain_quiet``
  seconds (default 0.5), after ``grace`` seconds at most (default 25, under Kubernetes' default
  ``terminationGracePeriodSeconds`` of 30), or at a second signal. Then the listeners close, whatever
  is still open is cut, and the process exits 0.

The drain logs ``drain start http=<open> tcp=<open> ws=<open> ...`` and ``drain done closed=<n> idle=<n>
ws=<n> left=<n> by=quiet|grace|signal <ms>ms`` (connections that ended during the drain, those the app
closed for being idle, WebSockets sent 1001, connections still open at its end, why it ended);
``--quiet`` keeps these two lines. `SampleApp.stop` (tests, ``async with``) stops without a drain: the
listeners close, idle connections close at once, and requests in progress and open TCP connections
get ``grace`` seconds (after a drain, what is left of them) before they are cut.

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TextIO, cast

from aiohttp import WSCloseCode, web

MAX_DELAY_SECONDS = 10.0
DEFAULT_GRACE_SECONDS = 25.0  # the drain's bound, under Kubernetes' terminationGracePeriodSeconds (30)
DEFAULT_DRAIN_IDLE_SECONDS = 1.0
DEFAULT_DRAIN_QUIET_SECONDS = 0.5
_CUT_SECONDS = 0.25  # once the grace is spent, how long aiohttp may take to cancel a request handler
_MAX_DRAIN_TICK = 0.05
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
    grace: float = DEFAULT_GRACE_SECONDS  # the drain's bound, and what `SampleApp.stop` gives open work
    drain_idle: float = DEFAULT_DRAIN_IDLE_SECONDS  # during the drain, close connections idle this long
    drain_quiet: float = DEFAULT_DRAIN_QUIET_SECONDS  # the drain ends once no connection opened this long
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
        return replace(
            self,
            pod=self.pod or env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname(),
            node=self.node or env.get("NODE_NAME", ""),
            namespace=self.namespace or env.get("POD_NAMESPACE") or "default",
            version=self.version or env.get("SERVICE_VERSION") or "unknown",
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
        for name in ("grace", "drain_idle", "drain_quiet"):
            value = getattr(self, name)
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value}")
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
        self._active = self._opened  # when bytes last came in (or were still waiting to go out)
        self._closing = False
        self.bytes_in = 0
        self.bytes_out = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a registered subclass
        self._peer = format_addr(transport.get_extra_info("peername"))
        self._app._tcp_open(self)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self._active = time.monotonic()
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

    def idle_for(self, now: float) -> float | None:
        """Seconds without bytes in either direction; None while closing or holding an unfinished line."""
        transport = self._transport
        if self._closing or transport is None or transport.is_closing():
            return None
        if self._rest or transport.get_write_buffer_size():
            self._active = now
        return now - self._active

    def close_idle(self) -> None:
        """Close the idle connection (FIN)."""
        self._closing = True
        self.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class _HttpConnection(web.RequestHandler):
    """aiohttp's HTTP/1.1 connection, telling the app when it opens and closes and whether it is idle.

    Idle means between requests: no request in progress and nothing of a next one received since the
    last one (bare CRLFs aside). A pipelined request that arrives while one is in progress is not seen
    here, but it is handled as soon as that one ends, so the connection never looks idle meanwhile.
    """

    def __init__(self, app: SampleApp, manager: web.Server, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(manager, loop=loop, access_log=None)  # type: ignore[arg-type]  # None: no access log
        self._sample = app
        self._busy = 0  # requests in progress (only one at a time: aiohttp handles them in order)
        self._partial = False  # bytes of a next request received, its handler not started yet
        self._idle_since = time.monotonic()
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._sample._http_open(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self._sample._http_closed(self)

    def data_received(self, data: bytes) -> None:
        if not self._busy and data.strip(b"\r\n"):
            self._partial = True
        super().data_received(data)

    def request_started(self) -> None:
        self._busy += 1
        self._partial = False

    def request_done(self) -> None:
        self._busy -= 1
        self._idle_since = time.monotonic()

    @property
    def busy(self) -> bool:
        return self._busy > 0

    def idle_for(self, now: float) -> float | None:
        """Seconds spent idle between requests; None while busy, partly received or closing."""
        if self._busy or self._partial or self._closing or self.transport is None:
            return None
        return now - self._idle_since

    def close_idle(self) -> None:
        """Close the connection between requests (FIN), as aiohttp's own keep-alive timeout does."""
        self._closing = True
        self.force_close()


class _HttpServer(web.Server):
    """aiohttp's low-level server, its connections `_HttpConnection`s."""

    def __init__(self, app: SampleApp) -> None:
        super().__init__(app._handle, access_log=None)
        self._sample = app

    def __call__(self) -> web.RequestHandler:
        return _HttpConnection(self._sample, self, asyncio.get_running_loop())


_Connection = _HttpConnection | _EchoProtocol


@dataclass(slots=True)
class _Listeners:
    http: list[socket.socket] = field(default_factory=list)
    tcp: list[asyncio.Server] = field(default_factory=list)


class SampleApp:
    """The sample app inside a running event loop: `start`, then `stop` (or ``async with``); `serve`
    runs `drain` between the two when signalled."""

    def __init__(self, config: SampleConfig, *, out: TextIO | None = None) -> None:
        config.validate()
        self.config = config
        self._log = _RequestLog(out if config.log_requests else None)
        self._events = _RequestLog(out)  # the drain's two lines, kept by --quiet
        self._runner: web.ServerRunner | None = None
        self._listeners = _Listeners()
        self.http_ports: list[int] = []
        self.tcp_ports: list[int] = []
        self._connections: set[_EchoProtocol] = set()
        self._no_connections = asyncio.Event()
        self._no_connections.set()
        self._http: set[_HttpConnection] = set()
        self._http_busy = 0
        self._no_requests = asyncio.Event()  # no request in progress
        self._no_requests.set()
        self._websockets: set[web.WebSocketResponse] = set()
        self._ws_closing: set[asyncio.Task[None]] = set()
        self._last_open = 0.0  # when the newest connection (of either kind) opened
        self._closing = False  # every response from now on closes its connection (drain or stop)
        self._drain_started: float | None = None
        self._deadline: float | None = None  # the drain's end at the latest, and so stop's
        self._cut = False  # a second signal ended the drain
        self._drain_ended = 0  # connections that ended during the drain
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
            # `stop` waits for requests in progress itself; aiohttp then only cancels what is left
            self._runner = web.ServerRunner(_HttpServer(self), shutdown_timeout=_CUT_SECONDS)
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

    async def drain(self) -> None:
        """Keep serving while clients go away, then return (`stop` follows); see the module docstring.

        The listeners stay open; every response closes its connection; connections idle for
        ``drain_idle`` are closed and WebSockets get 1001 at once. Returns once no connection is open
        and none opened for ``drain_quiet``, or after ``grace`` seconds at most. Does nothing after
        `stop` or a first `drain`.
        """
        if self._stopped or self._drain_started is not None:
            return
        config = self.config
        began = time.monotonic()
        self._drain_started = began
        self._deadline = began + config.grace
        self._closing = True
        self._events.line(
            f"drain start http={len(self._http)} tcp={len(self._connections)} ws={len(self._websockets)}"
            f" grace={config.grace:g}s idle={config.drain_idle:g}s quiet={config.drain_quiet:g}s"
        )
        sent_1001 = len(self._websockets)
        self._close_websockets()
        idle_closed = 0
        tick = min(_MAX_DRAIN_TICK, max(0.005, min(config.drain_idle, config.drain_quiet) / 4))
        while (now := time.monotonic()) < self._deadline:
            conns: list[_Connection] = [*self._http, *self._connections]
            for conn in conns:
                idle = conn.idle_for(now)
                if idle is not None and min(idle, now - began) >= config.drain_idle:
                    conn.close_idle()
                    idle_closed += 1
            quiet = now - max(began, self._last_open)
            if not self._http and not self._connections and quiet >= config.drain_quiet:
                break
            await asyncio.sleep(tick)
        by = "signal" if self._cut else "quiet" if now < self._deadline else "grace"
        left = len(self._http) + len(self._connections)
        ms = (time.monotonic() - began) * 1000
        self._events.line(
            f"drain done closed={self._drain_ended} idle={idle_closed} ws={sent_1001} left={left} by={by}"
            f" {ms:.1f}ms"
        )

    def _cut_drain(self) -> None:
        """End a drain now (`serve`'s second signal); `stop` then cuts what is still open."""
        if self._drain_started is not None and not self._cut:
            self._cut = True
            self._deadline = time.monotonic()

    async def stop(self) -> None:
        """Stop listening, close idle connections, give requests and TCP connections `grace` seconds
        (what is left of them after a `drain`), then close the rest."""
        if self._stopped:
            return
        self._stopped = True
        self._closing = True
        deadline = self._deadline if self._deadline is not None else time.monotonic() + self.config.grace
        for tcp in self._listeners.tcp:
            tcp.close()
        await asyncio.gather(self._stop_http(deadline), self._stop_tcp(deadline))

    async def _stop_http(self, deadline: float) -> None:
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()
            for sock in self._listeners.http:
                sock.close()
            self._close_websockets()
            for conn in list(self._http):
                if not conn.busy:
                    conn.close_idle()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._no_requests.wait()
            await self._runner.cleanup()  # cancels requests still in progress, closes their connections
        for sock in self._listeners.http:
            sock.close()

    async def _stop_tcp(self, deadline: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
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

    def _http_open(self, conn: _HttpConnection) -> None:
        self._http.add(conn)
        self._last_open = time.monotonic()

    def _http_closed(self, conn: _HttpConnection) -> None:
        if conn in self._http:
            self._http.discard(conn)
            if self._drain_started is not None:
                self._drain_ended += 1

    def _tcp_open(self, conn: _EchoProtocol) -> None:
        self._connections.add(conn)
        self._no_connections.clear()
        self._last_open = time.monotonic()

    def _tcp_closed(self, conn: _EchoProtocol) -> None:
        if conn in self._connections:
            self._connections.discard(conn)
            if self._drain_started is not None:
                self._drain_ended += 1
        if not self._connections:
            self._no_connections.set()

    def _close_websockets(self) -> None:
        for ws in list(self._websockets):
            self._websockets.discard(ws)
            task = asyncio.ensure_future(_going_away(ws))
            self._ws_closing.add(task)
            task.add_done_callback(self._ws_closing.discard)

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
        """``/ws`` with an Upgrade: a WebSocket that answers each message with ``<pod>: <message>``.

        Draining or stopping, it is closed with 1001 (going away) as soon as it opens."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._websockets.add(ws)
        try:
            if self._closing:
                await _going_away(ws)
            async for message in ws:
                if message.type == web.WSMsgType.TEXT:
                    await ws.send_str(f"{self.config.pod}: {message.data}")
                elif message.type == web.WSMsgType.BINARY:
                    await ws.send_bytes(message.data)
        finally:
            self._websockets.discard(ws)
        return ws

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn = request.protocol
        assert isinstance(conn, _HttpConnection)  # _HttpServer makes every connection
        conn.request_started()
        self._http_busy += 1
        self._no_requests.clear()
        try:
            return await self._serve(request)
        finally:
            conn.request_done()
            self._http_busy -= 1
            if not self._http_busy:
                self._no_requests.set()

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket_echo(request)
        started = time.monotonic()
        body_bytes = 0
        async for chunk in request.content.iter_any():
            body_bytes += len(chunk)
        response = await self._respond(request, body_bytes)
        if self._closing:  # draining or stopping: `Connection: close`, and aiohttp closes after it
            response.force_close()
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


async def _going_away(ws: web.WebSocketResponse) -> None:
    """Close `ws` with 1001 (going away); a peer already gone is no error."""
    with contextlib.suppress(OSError, RuntimeError):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"going away")


def _json(body: Mapping[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body, separators=(",", ":")).encode(), content_type="application/json"
    )


async def serve(config: SampleConfig, *, out: TextIO | None = None) -> None:
    """Run the app until SIGTERM or SIGINT, then drain and stop (see the module docstring).

    A second signal ends the drain at once.
    """
    out = sys.stdout if out is None else out
    loop = asyncio.get_running_loop()
    app = SampleApp(config, out=out)
    signalled = asyncio.Event()

    def on_signal() -> None:
        if signalled.is_set():
            app._cut_drain()
        app._closing = True  # from the signal on, no response keeps its connection (before drain() runs)
        signalled.set()

    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        async with app:
            out.write(app.ready_line() + "\n")
            out.flush()
            await signalled.wait()
            await app.drain()
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
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help="after SIGTERM, seconds the drain may take at most (default %(default)s)",
    )
    parser.add_argument(
        "--drain-idle",
        type=float,
        default=DEFAULT_DRAIN_IDLE_SECONDS,
        help="draining, close connections idle this many seconds (default %(default)s)",
    )
    parser.add_argument(
        "--drain-quiet",
        type=float,
        default=DEFAULT_DRAIN_QUIET_SECONDS,
        help="the drain ends when no connection is open and none opened for this long (default %(default)s)",
    )
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
        drain_idle=args.drain_idle,
        drain_quiet=args.drain_quiet,
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
