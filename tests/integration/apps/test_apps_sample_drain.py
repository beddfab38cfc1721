"""The sample app's drain on SIGTERM, against a real process and raw sockets: kept-alive and new
connections are served with ``Connection: close`` and then closed, idle ones are closed after
``--drain-idle``, requests in progress finish, the TCP echo closes idle connections with a FIN, and the
process exits 0 once its last connection is gone (not while a client keeps it busy). In-process: a
WebSocket gets 1001, a request partly received is never cut, and ``--grace`` bounds the drain."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from ambit.apps.sample import SampleApp, SampleConfig

READY = re.compile(r"ambit-sample ready pod=\S* node=\S* http=(\d+) tcp=(\d+)")


class Sample:
    """``python -m ambit.apps.sample`` with one HTTP and one TCP port on loopback, its output in a file."""

    def __init__(self, log: Path, *options: str) -> None:
        self.log = log
        argv = [sys.executable, "-m", "ambit.apps.sample", "--http-port", "0", "--tcp-port", "0"]
        argv += ["--bind", "127.0.0.1", "--pod", "drain-1", *options]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.http = self.tcp = 0
        self.signalled = 0.0

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.log.read_text()):
                return match
            if self.proc.poll() is not None:
                pytest.fail(f"sample app exited {self.proc.returncode}: {self.log.read_text()}")
            time.sleep(0.02)
        pytest.fail(f"no {pattern!r} in {timeout}s: {self.log.read_text()}")

    def wait_ready(self) -> None:
        match = self.wait_for(READY.pattern)
        self.http, self.tcp = int(match.group(1)), int(match.group(2))

    def sigterm(self) -> None:
        """SIGTERM, and wait until the drain has started."""
        self.signalled = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.wait_for(r"drain start ", timeout=10)

    def exit_code(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def running(self) -> bool:
        return self.proc.poll() is None

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


Start = Callable[..., Sample]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Starts the app with the drain options a test passes; kills it by pid if it is still running."""
    started: list[Sample] = []

    def run(*options: str) -> Sample:
        app = Sample(tmp_path / f"sample-{len(started)}.log", *options)
        started.append(app)
        app.wait_ready()
        return app

    try:
        yield run
    finally:
        for app in started:
            app.cleanup()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def send_get(sock: socket.socket, path: str) -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: drain\r\n\r\n".encode())


def read_response(sock: socket.socket) -> tuple[int, bytes, dict[str, str], bytes]:
    """One response: (status, the raw header block, headers by lower-case name, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed in the body")
        body += chunk
    assert len(body) == length, "nothing follows a response: no pipelining here"
    return int(lines[0].split()[1]), head, headers, body


def get(sock: socket.socket, path: str) -> tuple[int, bytes, dict[str, str], bytes]:
    send_get(sock, path)
    return read_response(sock)


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes `sock` (FIN: a reset raises) within `timeout` seconds; no data may come."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except TimeoutError:
        return False
    finally:
        sock.settimeout(10)
    assert data == b"", data
    return True


def keeps_alive(headers: dict[str, str]) -> bool:
    return headers.get("connection", "keep-alive").lower() != "close"


# the drain, against the real process


def test_kept_alive_connection_gets_connection_close_then_is_closed(start: Start) -> None:
    app = start("--drain-idle", "5", "--drain-quiet", "0.3", "--grace", "10")
    with connect(app.http) as sock:
        status, _, headers, _ = get(sock, "/before")
        assert status == 200 and keeps_alive(headers)  # control: kept alive before the signal
        app.sigterm()
        status, _, headers, body = get(sock, "/after")  # the keep-alive race's request: served
        assert status == 200 and b'"path":"/after"' in body
        assert headers["connection"].lower() == "close"
        assert closed_by_peer(sock, 2.0)
        closed = time.monotonic()
    assert app.exit_code() == 0
    assert time.monotonic() - closed < 2.5  # --drain-quiet after the last connection, not --drain-idle
    log = app.log.read_text()
    assert "GET /after 200" in log
    assert re.search(r"drain done closed=1 idle=0 ws=0 left=0 by=quiet ", log), log


def test_first_response_after_the_signal_has_connection_close_on_the_wire(start: Start) -> None:
    app = start("--drain-idle", "5", "--drain-quiet", "0.3", "--grace", "10")
    with connect(app.http) as sock:
        _, head, _, _ = get(sock, "/warm")
        assert b"\r\nConnection: close" not in head
        app.sigterm()  # once the app has seen the signal (its bytes may beat it into the loop)
        _, head, _, _ = get(sock, "/first")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nConnection: close" in head, head
        assert closed_by_peer(sock, 2.0)
    assert app.exit_code() == 0


def test_a_new_connection_during_the_drain_is_served(start: Start) -> None:
    app = start("--drain-idle", "3", "--drain-quiet", "0.3", "--grace", "10")
    with connect(app.http) as idle:  # keeps the drain going meanwhile
        get(idle, "/")
        app.sigterm()
        with connect(app.http) as sock:
            status, _, headers, body = get(sock, "/new")
            assert status == 200 and b'"path":"/new"' in body
            assert headers["connection"].lower() == "close"
            assert closed_by_peer(sock, 2.0)
        with connect(app.tcp) as tcp:  # the TCP echo takes new connections too
            tcp.sendall(b"during the drain\n")
            assert tcp.recv(100) == b"during the drain\n"
    assert app.exit_code() == 0


def test_an_idle_kept_alive_connection_is_closed_after_drain_idle(start: Start) -> None:
    app = start("--drain-idle", "0.6", "--drain-quiet", "0.3", "--grace", "10")
    with connect(app.http) as sock:
        status, _, headers, _ = get(sock, "/")
        assert status == 200 and keeps_alive(headers)
        assert not closed_by_peer(sock, 1.0)  # control: idle longer than --drain-idle, kept before the drain
        app.sigterm()
        assert closed_by_peer(sock, 3.0)
        waited = time.monotonic() - app.signalled
    assert 0.5 <= waited < 2.5  # counted from the start of the drain, not from the last request
    assert app.exit_code() == 0
    assert re.search(r"drain done closed=1 idle=1 ", app.log.read_text())


def test_a_request_in_progress_completes(start: Start) -> None:
    app = start("--drain-idle", "0.3", "--drain-quiet", "0.3", "--grace", "10")
    with connect(app.http) as sock:
        send_get(sock, "/delay/1")
        time.sleep(0.3)  # in progress
        app.sigterm()
        status, _, headers, body = read_response(sock)
        assert status == 200 and b'"delay":1.0' in body
        assert headers["connection"].lower() == "close"  # the response came after the drain began
        assert closed_by_peer(sock, 2.0)
    assert app.exit_code() == 0
    assert time.monotonic() - app.signalled < 4


def test_exits_once_a_busy_client_stops_and_not_before(start: Start) -> None:
    import http.client

    app = start("--drain-idle", "0.5", "--drain-quiet", "1.0", "--grace", "15")
    answers: list[tuple[float, int, bool]] = []  # (sent at, status, Connection: close)
    errors: list[Exception] = []
    stop = threading.Event()

    def client() -> None:  # a request every 200 ms on a kept-alive connection, reopened once closed
        conn = http.client.HTTPConnection("127.0.0.1", app.http, timeout=10)
        try:
            while not stop.is_set():
                sent = time.monotonic()
                conn.request("GET", f"/busy/{len(answers)}")
                response = conn.getresponse()
                response.read()
                close = (response.getheader("Connection") or "").lower() == "close"
                answers.append((sent, response.status, close))
                stop.wait(0.2)
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=client)
    thread.start()
    try:
        time.sleep(0.5)
        app.sigterm()
        drained = time.monotonic()
        time.sleep(2.5)  # more than --drain-idle + --drain-quiet: the client keeps the app up
        assert app.running()
    finally:
        stop.set()
        thread.join(10)
    stopped = time.monotonic()
    assert not errors, errors
    assert {status for _, status, _ in answers} == {200}  # no request lost
    assert not any(close for sent, _, close in answers if sent < app.signalled - 0.1)  # kept alive before
    during = [close for sent, _, close in answers if sent > drained]
    assert len(during) >= 5 and all(during)  # one connection per request during the drain
    assert app.exit_code() == 0
    assert time.monotonic() - stopped < 3.0  # --drain-quiet after the last connection
    assert re.search(r"drain done .* left=0 by=quiet ", app.log.read_text())


def test_tcp_echo_keeps_echoing_then_closes_idle_connections(start: Start) -> None:
    app = start("--drain-idle", "0.6", "--drain-quiet", "0.3", "--grace", "10")
    with connect(app.tcp) as busy, connect(app.tcp) as idle:
        idle.sendall(b"x")
        assert idle.recv(10) == b"x"
        app.sigterm()
        for i in range(6):  # 1.2 s of bytes every 0.2 s: an open connection keeps echoing
            time.sleep(0.2)
            busy.sendall(b"%d\n" % i)
            assert busy.recv(10) == b"%d\n" % i
        sent = time.monotonic()
        assert closed_by_peer(idle, 0.1)  # idle since the drain began: closed with a FIN
        assert closed_by_peer(busy, 3.0)  # then idle itself
        assert 0.5 <= time.monotonic() - sent < 2.5
    assert app.exit_code() == 0
    assert re.search(r"drain done closed=2 idle=2 ", app.log.read_text())


# the drain, in process


async def test_websockets_get_going_away_and_the_drain_ends() -> None:
    config = SampleConfig(
        http_ports=(0,), pod="p", bind="127.0.0.1", drain_idle=5.0, drain_quiet=0.2, grace=10.0
    )
    out = io.StringIO()
    async with SampleApp(config, out=out) as app, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{app.http_ports[0]}/ws"
        async with session.ws_connect(url) as ws:
            await ws.send_str("hi")
            assert await ws.receive_str() == "p: hi"
            begin = time.monotonic()
            draining = asyncio.ensure_future(app.drain())
            message = await ws.receive(timeout=5)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert message.data == aiohttp.WSCloseCode.GOING_AWAY
        async with session.ws_connect(url) as late:  # opened during the drain: 1001 at once
            message = await late.receive(timeout=5)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert message.data == aiohttp.WSCloseCode.GOING_AWAY
        await session.close()  # the session's pooled connections go too
        await asyncio.wait_for(draining, 5)
        assert time.monotonic() - begin < 3  # well before --grace and --drain-idle
    assert "ws=1 left=0 by=quiet" in out.getvalue()


async def test_a_request_partly_received_is_not_cut_and_grace_bounds_the_drain() -> None:
    config = SampleConfig(http_ports=(0,), bind="127.0.0.1", drain_idle=0.2, drain_quiet=0.1, grace=1.5)
    out = io.StringIO()
    app = SampleApp(config, out=out)
    await app.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", app.http_ports[0])
        stalled_r, stalled_w = await asyncio.open_connection("127.0.0.1", app.http_ports[0])
        begin = time.monotonic()
        draining = asyncio.ensure_future(app.drain())
        writer.write(b"GET /slow-client HTTP/1.1\r\nHost: x\r\n")  # headers unfinished
        stalled_w.write(b"GET /never-finished HTTP/1.1\r\n")
        await asyncio.sleep(0.6)  # three times --drain-idle
        writer.write(b"\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head
        await asyncio.wait_for(draining, 5)  # the stalled client holds the drain up to --grace
        assert 1.4 <= time.monotonic() - begin < 2.5
        assert "left=1 by=grace" in out.getvalue()
        stopping = time.monotonic()
        await app.stop()
        assert time.monotonic() - stopping < 1.5  # stop does not give the grace again
        assert await asyncio.wait_for(stalled_r.read(), 2) == b""
        for w in (writer, stalled_w):
            w.close()
    finally:
        await app.stop()
