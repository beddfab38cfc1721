"""The transports of a run: connections per mode, the HTTP and TCP-echo exchanges, and `run_load`."""

from __future__ import annotations

import asyncio
import json
import socket

from ambit.apps.load.config import LoadConfig, Target
from ambit.apps.load.http1 import MAX_HEAD_LINE, read_response
from ambit.apps.load.open_loop import Attempt, run_open_loop
from ambit.apps.load.outcomes import CLOSED, MISMATCH, OK, RequestFailed, http_outcome
from ambit.apps.load.pool import Connection, KeepAlivePool
from ambit.apps.load.result import LoadResult


class LoadClient:
    """Connections for one run; subclasses speak HTTP or TCP echo over them."""

    def __init__(self, config: LoadConfig, target: Target) -> None:
        self.config = config
        self.target = target
        self.address: tuple[str, int] = (target.host, target.port)
        self.pool = KeepAlivePool(config.connections, config.pool_limit, config.max_age)
        # With ``served_by_field``: request index -> the field's value in its 2xx answer (when there was one).
        self.served: dict[int, str] = {}

    async def prepare(self) -> None:
        """Resolve the host once; if that fails, every connect resolves (and fails) by itself."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.target.host, self.target.port, type=socket.SOCK_STREAM)
        except OSError:
            return
        if infos:
            self.address = (str(infos[0][4][0]), self.target.port)

    async def _connect(self, attempt: Attempt) -> Connection:
        attempt.phase = "connect"
        attempt.connection = "new"
        reader, writer = await asyncio.open_connection(*self.address, limit=MAX_HEAD_LINE)
        return Connection(reader, writer)

    async def _acquire(self, attempt: Attempt, *, fresh: bool) -> Connection:
        if not attempt.keepalive:
            return await self._connect(attempt)
        conn = None if fresh else self.pool.take()
        if conn is not None:
            attempt.connection = "reused"
            return conn
        if self.config.queue and self.pool.open >= self.pool.limit:
            attempt.phase = "queued"
            conn = await self.pool.wait()
            if conn is not None:
                attempt.connection = "reused"
                return conn
        else:
            self.pool.reserve()
        try:
            return await self._connect(attempt)
        except BaseException:
            self.pool.unreserve()
            raise

    def _release(self, attempt: Attempt, conn: Connection, reusable: bool) -> None:
        if attempt.keepalive:
            self.pool.give_back(conn, reusable)
        else:
            conn.close()

    def _drop(self, attempt: Attempt, conn: Connection) -> None:
        if attempt.keepalive:
            self.pool.discard(conn)
        else:
            conn.abort()

    async def execute(self, attempt: Attempt) -> str:
        fresh = False
        while True:
            conn = await self._acquire(attempt, fresh=fresh)
            try:
                outcome, reusable = await self._exchange(attempt, conn)
            except BaseException as exc:
                self._drop(attempt, conn)
                if (
                    not fresh
                    and attempt.connection == "reused"
                    and self.config.retry_stale
                    and _stale(exc, attempt.phase)
                ):
                    fresh = attempt.retried = True
                    continue
                raise
            self._release(attempt, conn, reusable)
            return outcome

    async def _exchange(self, attempt: Attempt, conn: Connection) -> tuple[str, bool]:
        raise NotImplementedError

    def close(self) -> None:
        self.pool.close()


def _stale(exc: BaseException, phase: str) -> bool:
    """Whether `exc` says a reused connection was gone before any response byte arrived."""
    if phase not in ("request", "response"):
        return False
    if isinstance(exc, RequestFailed):
        return exc.outcome == CLOSED
    if isinstance(exc, asyncio.IncompleteReadError):
        return not exc.partial
    return isinstance(exc, ConnectionResetError | BrokenPipeError)


class HttpClient(LoadClient):
    def __init__(self, config: LoadConfig, target: Target) -> None:
        super().__init__(config, target)
        size = config.payload_bytes("http")
        self.method = (config.method or ("POST" if size else "GET")).upper()
        self.payload = size
        self.served_by_field = config.served_by_field

    def request(self, index: int, keepalive: bool) -> bytes:
        body = _filler(f"{self.config.marker} {index} ".encode(), self.payload, b"x") if self.payload else b""
        lines = [
            f"{self.method} {self.target.path} HTTP/1.1",
            f"Host: {self.target.host_header}",
            "User-Agent: ambit-load",
            f"Connection: {'keep-alive' if keepalive else 'close'}",
            f"X-Request-Id: {self.config.marker}-{index}",
        ]
        lines += [f"{name}: {value}" for name, value in self.config.headers]
        if body or self.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def _exchange(self, attempt: Attempt, conn: Connection) -> tuple[str, bool]:
        attempt.phase = "request"
        conn.writer.write(self.request(attempt.index, attempt.keepalive))
        await conn.writer.drain()
        attempt.phase = "response"
        if self.served_by_field is None:
            status, close = await read_response(conn.reader, head=self.method == "HEAD")
        else:
            body = bytearray()
            status, close = await read_response(conn.reader, head=self.method == "HEAD", body=body)
            if body and (served := served_by(body, self.served_by_field)):
                self.served[attempt.index] = served
        attempt.status = status
        return http_outcome(status), not close


class TcpClient(LoadClient):
    def __init__(self, config: LoadConfig, target: Target) -> None:
        super().__init__(config, target)
        self.payload = config.payload_bytes("tcp")
        self.prefix = b"" if config.expect_prefix is None else config.expect_prefix.encode() + b" "

    def line(self, index: int) -> bytes:
        head = f"{self.config.marker} {index} ".encode()
        return _filler(head, max(self.payload, len(head) + 1) - 1, b".") + b"\n"

    async def _exchange(self, attempt: Attempt, conn: Connection) -> tuple[str, bool]:
        attempt.phase = "request"
        line = self.line(attempt.index)
        expected = self.prefix + line
        conn.writer.write(line)
        await conn.writer.drain()
        attempt.phase = "response"
        echo = await conn.reader.readexactly(len(expected))
        if echo != expected:
            raise RequestFailed(MISMATCH, f"sent {line[:40]!r}, got {echo[:40]!r}")
        return OK, True


def served_by(body: bytes | bytearray, field: str) -> str:
    """`field`'s string value in a JSON object `body`; "" if the body is not one or lacks it."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        return ""
    value = data.get(field) if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def _filler(head: bytes, size: int, pad: bytes) -> bytes:
    return head[:size] if len(head) >= size else head + pad * (size - len(head))


async def run_load(config: LoadConfig) -> LoadResult:
    """Run `config` against its target and return every request's record (see the module docstring)."""
    target = config.validate()
    client: LoadClient = HttpClient(config, target) if target.scheme == "http" else TcpClient(config, target)
    await client.prepare()
    try:
        result = await run_open_loop(config, client.execute)
    finally:
        client.close()
    for index, served in client.served.items():
        result.records[index].served_by = served
    return result
