"""The chaos probe and its load-client knobs on loopback: served-by capture and kept-alive connection
retirement against the sample app, the probe's lines for several flows and both kinds, failures
recorded (a closed port, a connection closed under a request: never retried), and ``ambit app probe``
as a process ended by SIGTERM (complete lines) or killed outright (at most the last second lost)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ambit.apps.load import LoadConfig, run_load
from ambit.apps.load.outcomes import CLOSED, CONNECT_ERROR, OK
from ambit.apps.load.probe import LINE_FIELDS, ProbeConfig, read_probe_lines, run_probe
from ambit.apps.sample import SampleApp, SampleConfig

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def sample_app(node: str) -> SampleApp:
    config = SampleConfig(http_ports=(0,), pod=f"pod-{node}", node=node, bind="127.0.0.1", log_requests=False)
    return SampleApp(config)


@pytest.fixture
async def node_a() -> AsyncIterator[SampleApp]:
    async with sample_app("node-a") as app:
        yield app


@pytest.fixture
async def node_b() -> AsyncIterator[SampleApp]:
    async with sample_app("node-b") as app:
        yield app


def url(app: SampleApp) -> str:
    return f"http://127.0.0.1:{app.http_ports[0]}/echo"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[int]:
    """A throwaway asyncio server on loopback; every connection's handler is cancelled at the end."""
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            handlers.discard(task)
            writer.close()

    srv = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await srv.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> int:
    """Read a request's head; the index in its X-Request-Id (-1 without one)."""
    index = -1
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode().partition(":")
        if name.lower() == "x-request-id":
            index = int(value.strip().rsplit("-", 1)[1])
    return index


# the load client's knobs against the sample app


async def test_served_by_names_the_node_and_the_connection(node_a: SampleApp) -> None:
    result = await run_load(
        LoadConfig(url(node_a), rate=50, duration=0.4, mode="mixed", served_by_field="node")
    )
    assert result.outcomes() == {OK: 20}
    assert {r.served_by for r in result.records} == {"node-a"}
    plain = await run_load(LoadConfig(url(node_a), rate=50, duration=0.2))
    assert {r.served_by for r in plain.records} == {""}  # without the knob nothing is read


async def test_served_by_under_chunked_and_close_framing_and_odd_bodies() -> None:
    answers = [
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"nod\r\n9\r\ne":"n-c"}\r\n0\r\n\r\n',
        b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"node":"n-e"}',
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",  # not JSON: ok, served_by ""
        b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"pod":"p"}',  # lacks the field
        b'HTTP/1.1 503 No\r\nContent-Length: 14\r\n\r\n{"node":"n-x"}',  # not 2xx: not read
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = await read_request(reader)
        writer.write(answers[index % len(answers)])
        await writer.drain()

    async with server(handler) as port:
        config = LoadConfig(
            f"http://127.0.0.1:{port}/", rate=50, duration=0.2, mode="new", served_by_field="node"
        )
        result = await run_load(config)
    assert [(r.outcome, r.served_by) for r in result.records] == [
        (OK, "n-c"),
        (OK, "n-e"),
        (OK, ""),
        (OK, ""),
        ("http_503", ""),
    ] * 2


async def test_max_age_retires_kept_alive_connections(node_a: SampleApp) -> None:
    """The sample app's ``peer`` (the client's ip:port) tells the connections apart: with a 0.3 s
    maximum age each is used for at most 0.3 s after it connected, then replaced by a new one."""
    config = LoadConfig(url(node_a), rate=20, duration=2, connections=2, max_age=0.3, served_by_field="peer")
    result = await run_load(config)
    assert result.outcomes() == {OK: 40}
    by_peer: dict[str, list[float]] = defaultdict(list)
    for r in result.records:
        assert r.started is not None
        by_peer[r.served_by].append(r.started)
    assert "" not in by_peer
    assert len(by_peer) >= 5, by_peer.keys()
    assert result.connections()["new"] == len(by_peer)  # each new connection is one peer
    for starts in by_peer.values():
        assert max(starts) - min(starts) <= 0.3 + 0.15, starts  # 0.15: the stamp after the age check

    # the control: without a maximum age the pool's connections serve the whole run
    control = await run_load(
        LoadConfig(url(node_a), rate=20, duration=2, connections=2, served_by_field="peer")
    )
    assert control.outcomes() == {OK: 40}
    peers = {r.served_by for r in control.records}
    assert control.connections()["new"] == len(peers) <= 3  # the pool's two (a third if both were busy)
    assert control.connections()["reused"] >= 37


# the probe in process


async def probe(tmp_path: Path, config: ProbeConfig) -> tuple[list[dict[str, Any]], list[str], float, float]:
    out = tmp_path / "probe.jsonl"
    said: list[str] = []
    before = time.monotonic()
    summary = await run_probe(config, out, say=said.append)
    after = time.monotonic()
    text = out.read_text()
    assert text.endswith("\n")
    lines = read_probe_lines(text)
    assert (summary.requests, summary.failed) == (len(lines), sum(1 for d in lines if d["outcome"] != OK))
    assert not summary.stopped
    assert said == [
        f"probe running source={config.source} flows={len(config.flows)}",
        f"probe done requests={summary.requests} failed={summary.failed}",
    ]
    for data in lines:
        assert tuple(data) == LINE_FIELDS
        assert before <= data["start"] <= data["end"] <= after
    return lines, said, before, after


def counts(lines: list[dict[str, Any]], *keys: str) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(d[k] for k in keys) for d in lines)


async def test_probe_two_flows_both_kinds(tmp_path: Path, node_a: SampleApp, node_b: SampleApp) -> None:
    config = ProbeConfig(
        flows=(("echo-a", url(node_a)), ("echo-b", url(node_b))), source="node-x", rate=20, duration=1
    )
    lines, _, _, _ = await probe(tmp_path, config)
    assert counts(lines, "destination", "kind", "outcome", "served_node", "status") == {
        ("echo-a", "new", OK, "node-a", 200): 20,
        ("echo-a", "keepalive", OK, "node-a", 200): 20,
        ("echo-b", "new", OK, "node-b", 200): 20,
        ("echo-b", "keepalive", OK, "node-b", 200): 20,
    }
    assert {d["source"] for d in lines} == {"node-x"}
    assert {d["connection"] for d in lines if d["kind"] == "new"} == {"new"}
    keepalive = counts([d for d in lines if d["kind"] == "keepalive"], "connection")
    assert keepalive[("reused",)] >= 30  # 20 s maximum age: the pool's connections serve the run
    # each flow's requests went out on its schedule, 50 ms apart
    for flow in ("echo-a", "echo-b"):
        starts = sorted(d["start"] for d in lines if d["destination"] == flow and d["kind"] == "new")
        assert 0.5 <= starts[-1] - starts[0] <= 2.0, starts


async def test_probe_retires_kept_alive_connections(tmp_path: Path, node_a: SampleApp) -> None:
    flows = (("echo-a", url(node_a)),)
    aged = ProbeConfig(flows=flows, source="n1", kinds=("keepalive",), rate=20, duration=2, max_age=0.3)
    lines, _, _, _ = await probe(tmp_path, aged)
    assert counts(lines, "outcome") == {(OK,): 40}
    assert counts(lines, "connection")[("new",)] >= 5
    forever = ProbeConfig(flows=flows, source="n1", kinds=("keepalive",), rate=20, duration=2, max_age=None)
    lines, _, _, _ = await probe(tmp_path, forever)
    assert counts(lines, "outcome") == {(OK,): 40}
    assert counts(lines, "connection")[("new",)] <= 3


async def test_probe_records_failures_to_a_closed_port(tmp_path: Path, node_a: SampleApp) -> None:
    flows = (("echo-a", url(node_a)), ("gone", f"http://127.0.0.1:{free_port()}/"))
    lines, _, _, _ = await probe(tmp_path, ProbeConfig(flows=flows, source="n1", rate=20, duration=0.5))
    assert counts(lines, "destination", "kind", "outcome") == {
        ("echo-a", "new", OK): 10,
        ("echo-a", "keepalive", OK): 10,
        ("gone", "new", CONNECT_ERROR): 10,
        ("gone", "keepalive", CONNECT_ERROR): 10,
    }
    gone = [d for d in lines if d["destination"] == "gone"]
    assert {(d["status"], d["served_node"], d["connection"]) for d in gone} == {(None, "", "new")}
    assert all("ECONNREFUSED" in d["detail"] for d in gone)


async def test_probe_never_retries_a_connection_closed_under_a_request(tmp_path: Path) -> None:
    """The server answers once per connection, then reads the next request and closes without an
    answer: the load client would retry those on a new connection, the probe records them failed."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{"node":"n1"}')
        await writer.drain()
        await read_request(reader)

    async with server(handler) as port:
        flows = (("once", f"http://127.0.0.1:{port}/"),)
        config = ProbeConfig(
            flows=flows, source="n1", kinds=("keepalive",), rate=20, duration=1, connections=1
        )
        lines, _, _, _ = await probe(tmp_path, config)
    assert len(lines) == 20  # one line per scheduled request: no retry added any
    outcomes = counts(lines, "outcome", "connection")
    assert outcomes[(CLOSED, "reused")] >= 5
    assert set(outcomes) <= {(OK, "new"), (CLOSED, "reused")}
    assert {d["served_node"] for d in lines if d["outcome"] == OK} == {"n1"}


async def test_probe_stop_event_ends_it_early_with_the_lines_written(
    tmp_path: Path, node_a: SampleApp
) -> None:
    out = tmp_path / "probe.jsonl"
    stop = asyncio.Event()
    said: list[str] = []
    config = ProbeConfig(flows=(("echo-a", url(node_a)),), source="n1", rate=20, duration=60)
    task = asyncio.ensure_future(run_probe(config, out, stop=stop, say=said.append))
    await asyncio.sleep(1.0)
    assert said == ["probe running source=n1 flows=1"]
    stop.set()
    summary = await asyncio.wait_for(task, 10)
    assert summary.stopped
    lines = read_probe_lines(out.read_text())
    assert out.read_text().endswith("\n")
    assert 20 <= len(lines) == summary.requests <= 60
    assert summary.failed == 0
    assert said[-1] == f"probe done requests={summary.requests} failed=0"


# ``ambit app probe`` as a process


def ambit() -> list[str]:
    script = Path(sys.executable).with_name("ambit")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from ambit.cli import main; main()"]


async def start_probe(out: Path, *flows: str) -> asyncio.subprocess.Process:
    args = [
        *ambit(),
        "app",
        "probe",
        "--source",
        "node-x",
        "--out",
        str(out),
        "--rate",
        "20",
        "--duration",
        "60",
    ]
    for flow in flows:
        args += ["--flow", flow]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.decode() == f"probe running source=node-x flows={len(flows)}\n"
    return proc


async def test_probe_process_ends_cleanly_on_sigterm(tmp_path: Path, node_a: SampleApp) -> None:
    out = tmp_path / "probe.jsonl"
    proc = await start_probe(out, f"echo-a={url(node_a)}", f"gone=http://127.0.0.1:{free_port()}/")
    try:
        await asyncio.sleep(1.5)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    text = out.read_text()
    assert text.endswith("\n")
    lines = read_probe_lines(text)
    assert len(lines) == len(text.splitlines())  # every line whole
    summary = stdout.decode().strip().splitlines()
    failed = sum(1 for d in lines if d["outcome"] != OK)
    assert summary == [f"probe done requests={len(lines)} failed={failed}"]
    by_flow = counts(lines, "destination", "kind", "outcome")
    assert set(by_flow) == {
        ("echo-a", "new", OK),
        ("echo-a", "keepalive", OK),
        ("gone", "new", CONNECT_ERROR),
        ("gone", "keepalive", CONNECT_ERROR),
    }
    assert min(by_flow.values()) >= 20  # 1.5 s at 20/s each
    assert max(d["end"] for d in lines) <= stopped_at + 1.0


async def test_a_killed_probe_process_loses_at_most_the_last_second(
    tmp_path: Path, node_a: SampleApp
) -> None:
    out = tmp_path / "probe.jsonl"
    proc = await start_probe(out, f"echo-a={url(node_a)}")
    try:
        await asyncio.sleep(2.0)
        killed_at = time.monotonic()
        proc.kill()
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = read_probe_lines(out.read_text())
    assert counts(lines, "outcome") == {(OK,): len(lines)}
    assert len(lines) >= 40  # 2 s at 20/s per kind, less the last second at most
    assert max(d["end"] for d in lines) >= killed_at - 1.25  # flushed every 0.5 s
