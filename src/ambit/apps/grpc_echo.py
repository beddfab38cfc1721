"""A gRPC echo server and its checking client, for end-to-end tests of gRPC through the mesh.

No protoc: the service ``ambit.echo.Echo`` is registered with ``grpc.method_handlers_generic_handler``
and its messages are raw bytes (identity serializers), so a proxy in the path sees ordinary gRPC
frames, statuses and trailers. Methods:

* ``Unary`` (unary-unary): answers ``<pod>: <request bytes>`` with the trailing metadata
  ``x-echo-pod: <pod>``;
* ``Stream`` (bidirectional): answers each request message ``<pod>: <message>`` as it arrives;
* ``Fail`` (unary): aborts with ``NOT_FOUND`` and details ``no such thing``, so a test can check that
  ``grpc-status``/``grpc-message`` trailers pass through intact.

Server (:class:`EchoServer`, :func:`serve`): a ``grpc.aio`` server on an insecure port (the mesh
provides mTLS). Once listening, `serve` prints ``ambit-grpc-echo ready pod=<pod> port=<port>``
(flushed; port 0 in the options means any free port and the line names the bound one); SIGTERM or
SIGINT stops it gracefully (open calls get ``grace`` seconds) and the process exits 0.

Client (:func:`call`): against ``host:port`` it calls ``Unary`` N times (messages ``unary-<i>``), one
``Stream`` with K messages (``stream-<i>``, each answer read before the next message is sent, so a
proxy that buffers a whole request stream shows up as a timeout) and ``Fail`` once, and judges the
answers (:class:`CallResult`, printed as one JSON object by the CLI). The host is resolved here with
the system resolver (a pod's ``/etc/hosts``, which gRPC's own c-ares resolver may not consult) and
the original ``host:port`` is sent as the ``:authority``; HTTP proxies from the environment are
ignored.

Run it as ``ambit app grpc-echo serve|call ...`` or ``python -m ambit.apps.grpc_echo serve|call ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import grpc

SERVICE = "ambit.echo.Echo"
UNARY_METHOD = f"/{SERVICE}/Unary"
STREAM_METHOD = f"/{SERVICE}/Stream"
FAIL_METHOD = f"/{SERVICE}/Fail"
POD_TRAILER = "x-echo-pod"
FAIL_CODE = "NOT_FOUND"
FAIL_DETAILS = "no such thing"
DEFAULT_PORT = 7070
DEFAULT_GRACE_SECONDS = 5.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_UNARY = 3
DEFAULT_STREAM = 3
READY_PREFIX = "ambit-grpc-echo ready"


def default_pod() -> str:
    """``POD_NAME``, then ``HOSTNAME``, then the host name."""
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class EchoServer:
    """The echo service on one insecure port inside a running event loop: `start`, then `stop`."""

    def __init__(
        self,
        pod: str,
        *,
        port: int = DEFAULT_PORT,
        bind: str = "0.0.0.0",
        grace: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range")
        if grace < 0:
            raise ValueError("grace must be >= 0")
        self.pod = pod
        self._prefix = pod.encode() + b": "
        self._bind = bind
        self._requested_port = port
        self._grace = grace
        self._server: Any = None
        self.port = 0

    async def __aenter__(self) -> EchoServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> int:
        """Bind, start serving and return the bound port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        server = grpc.aio.server()
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
            "Stream": grpc.stream_stream_rpc_method_handler(self._stream),
            "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        address = _host_port(self._bind, self._requested_port)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
            raise OSError(f"cannot bind {address}: {exc}") from None
        if port == 0:
            raise OSError(f"cannot bind {address}")
        await server.start()
        self._server = server
        self.port = int(port)
        return self.port

    def ready_line(self) -> str:
        """The line `serve` prints once listening."""
        return f"{READY_PREFIX} pod={self.pod} port={self.port}"

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give open calls `grace` seconds (default: the server's), then close."""
        server, self._server = self._server, None
        if server is None:
            return
        await server.stop(self._grace if grace is None else grace)
        await asyncio.sleep(0)  # let cancelled handlers finish before the loop moves on

    async def _unary(self, request: bytes, context: Any) -> bytes:
        context.set_trailing_metadata(((POD_TRAILER, self.pod),))
        return self._prefix + request

    async def _stream(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for message in requests:
            yield self._prefix + message

    async def _fail(self, request: bytes, context: Any) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, FAIL_DETAILS)
        raise RuntimeError("context.abort returned")  # grpc.aio's abort always raises


async def serve(
    port: int = DEFAULT_PORT,
    pod: str | None = None,
    *,
    bind: str = "0.0.0.0",
    grace: float = DEFAULT_GRACE_SECONDS,
    out: TextIO | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, printing the ready line once listening; then stop gracefully."""
    out = sys.stdout if out is None else out
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with EchoServer(pod or default_pod(), port=port, bind=bind, grace=grace) as server:
            out.write(server.ready_line() + "\n")
            out.flush()
            await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def run_server(
    port: int = DEFAULT_PORT,
    pod: str | None = None,
    *,
    bind: str = "0.0.0.0",
    grace: float = DEFAULT_GRACE_SECONDS,
) -> None:
    """`serve` under uvloop until signalled."""
    import uvloop

    uvloop.run(serve(port, pod, bind=bind, grace=grace))


# client


@dataclass(slots=True)
class CallResult:
    """What the client saw; ``errors`` lists every way the calls misbehaved (empty when all behaved)."""

    unary: list[str] = field(default_factory=list)
    unary_trailers: dict[str, str] = field(default_factory=dict)
    stream: list[str] = field(default_factory=list)
    fail_code: str | None = None
    fail_details: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def split_target(target: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) → (host, port); ValueError if it is not one."""
    host, sep, port_text = target.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"target {target!r} is not host:port")
    return host, int(port_text)


async def resolve_target(target: str) -> str:
    """The gRPC target naming `target`'s addresses: its IPv4 ones (``ipv4:a.b.c.d:p,...``), else its
    IPv6 ones (``ipv6:[..]:p,...``), as the system resolver lists them."""
    host, port = split_target(target)
    try:
        ips = [ipaddress.ip_address(host)]
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        ips = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    v4 = [ip for ip in ips if ip.version == 4]
    if v4:
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip in v4)
    if ips:
        return "ipv6:" + ",".join(f"[{ip}]:{port}" for ip in ips)
    raise OSError(f"{host} has no address")


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _failure(what: str, exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{what}: {exc.code().name} {exc.details()!r}"
    return f"{what}: {type(exc).__name__}: {exc}"


async def call(
    target: str,
    *,
    unary: int = DEFAULT_UNARY,
    stream: int = DEFAULT_STREAM,
    rpc_timeout: float = DEFAULT_TIMEOUT,
) -> CallResult:
    """Call Unary `unary` times, one Stream of `stream` messages and Fail once (see the module docstring).

    Each call (and the name lookup) has `rpc_timeout` seconds, sent as the gRPC deadline. Raises
    ValueError for a malformed `target`; everything else that goes wrong (resolution included) is
    recorded in the result's ``errors``.
    """
    split_target(target)
    result = CallResult()
    try:
        async with asyncio.timeout(rpc_timeout):
            address = await resolve_target(target)
    except OSError as exc:  # TimeoutError included
        result.errors.append(_failure(f"resolve {target}", exc))
        return result
    options = [("grpc.default_authority", target), ("grpc.enable_http_proxy", 0)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        await _call_unary(channel, result, unary, rpc_timeout)
        await _call_stream(channel, result, stream, rpc_timeout)
        await _call_fail(channel, result, rpc_timeout)
    return result


async def _call_unary(channel: Any, result: CallResult, count: int, rpc_timeout: float) -> None:
    method = channel.unary_unary(UNARY_METHOD)
    for i in range(count):
        sent = f"unary-{i}"
        try:
            rpc = method(sent.encode(), timeout=rpc_timeout)
            answer = _text(await rpc)
            trailers = {key: _text(value) for key, value in await rpc.trailing_metadata() or ()}
        except (grpc.aio.AioRpcError, OSError) as exc:
            result.errors.append(_failure(f"Unary #{i}", exc))
            continue
        result.unary.append(answer)
        if not result.unary_trailers:
            result.unary_trailers = trailers
        pod = trailers.get(POD_TRAILER)
        if pod is None:
            result.errors.append(f"Unary #{i}: no {POD_TRAILER} trailer in {trailers}")
        elif answer != f"{pod}: {sent}":
            result.errors.append(f"Unary #{i}: answered {answer!r}, expected {pod + ': ' + sent!r}")


async def _call_stream(channel: Any, result: CallResult, count: int, rpc_timeout: float) -> None:
    rpc = channel.stream_stream(STREAM_METHOD)(timeout=rpc_timeout)
    pods: set[str] = set()
    try:
        for i in range(count):
            sent = f"stream-{i}"
            await rpc.write(sent.encode())
            answer = await rpc.read()
            if answer is grpc.aio.EOF:
                result.errors.append(f"Stream: ended after {i} answers of {count}")
                break
            text = _text(answer)
            result.stream.append(text)
            pod, sep, echoed = text.partition(": ")
            pods.add(pod)
            if not sep or echoed != sent:
                result.errors.append(f"Stream #{i}: answered {text!r} to {sent!r}")
        await rpc.done_writing()
        extra = await rpc.read()
        if extra is not grpc.aio.EOF:
            result.errors.append(f"Stream: unexpected answer {_text(extra)!r} after the last message")
        code = await rpc.code()
        if code != grpc.StatusCode.OK:
            result.errors.append(f"Stream: ended {code.name} {await rpc.details()!r}")
    except (grpc.aio.AioRpcError, OSError) as exc:
        result.errors.append(_failure("Stream", exc))
    if len(pods) > 1:
        result.errors.append(f"Stream: answers from several pods {sorted(pods)}")


async def _call_fail(channel: Any, result: CallResult, rpc_timeout: float) -> None:
    try:
        answer = await channel.unary_unary(FAIL_METHOD)(b"fail", timeout=rpc_timeout)
    except grpc.aio.AioRpcError as exc:
        result.fail_code = exc.code().name
        result.fail_details = exc.details()
        if (result.fail_code, result.fail_details) != (FAIL_CODE, FAIL_DETAILS):
            result.errors.append(_failure(f"Fail: expected {FAIL_CODE} {FAIL_DETAILS!r}, got", exc))
    except OSError as exc:
        result.errors.append(_failure("Fail", exc))
    else:
        result.errors.append(f"Fail: answered {_text(answer)!r} instead of failing")


def run_call(
    target: str, *, unary: int = DEFAULT_UNARY, stream: int = DEFAULT_STREAM, timeout: float = DEFAULT_TIMEOUT
) -> CallResult:
    """`call` under uvloop."""
    import uvloop

    return uvloop.run(call(target, unary=unary, stream=stream, rpc_timeout=timeout))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ambit.apps.grpc_echo", description=(__doc__ or "").split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the echo service until SIGTERM")
    serve_parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free port)")
    serve_parser.add_argument("--pod", default="", help="pod name [$POD_NAME]")
    serve_parser.add_argument("--bind", default="0.0.0.0", help="address to listen on")
    serve_parser.add_argument("--grace", type=float, default=DEFAULT_GRACE_SECONDS, help="seconds to finish")
    call_parser = commands.add_parser(
        "call", help="call the echo service, print JSON, exit 1 on misbehaviour"
    )
    call_parser.add_argument("--target", required=True, help="host:port")
    call_parser.add_argument("--unary", type=int, default=DEFAULT_UNARY, help="Unary calls")
    call_parser.add_argument("--stream", type=int, default=DEFAULT_STREAM, help="messages on the Stream")
    call_parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per call")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            if not 0 <= args.port <= 65535 or args.grace < 0:
                raise ValueError("--port must be 0..65535 and --grace >= 0")
            run_server(args.port, args.pod or None, bind=args.bind, grace=args.grace)
            return 0
        if args.unary < 0 or args.stream < 0 or args.timeout <= 0:
            raise ValueError("--unary and --stream must be >= 0, --timeout > 0")
        result = run_call(args.target, unary=args.unary, stream=args.stream, timeout=args.timeout)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.to_json(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
