"""The chaos probe's pieces without a network: the kept-alive connections' maximum age, the served-by
capture (reading a body under every framing), the records' new field, the probe's configuration, its
lines and their reader, and the CLI's errors for bad flows."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ambit.apps.load import LoadConfig, RequestRecord, Target, read_response
from ambit.apps.load.clients import HttpClient, served_by
from ambit.apps.load.http1 import MAX_KEPT_BODY
from ambit.apps.load.outcomes import CONNECT_ERROR, OK, TIMEOUT
from ambit.apps.load.pool import KeepAlivePool
from ambit.apps.load.probe import (
    LINE_FIELDS,
    ProbeConfig,
    ProbeWriter,
    _FlowLoop,
    _Probe,
    line_prefix,
    probe_line,
    read_probe_lines,
)
from ambit.cli import cli

# the kept-alive connections' maximum age


class AgedConn:
    def __init__(self, age: float) -> None:
        self.connected = time.monotonic() - age
        self.alive = True
        self.closed = False
        self.aborted = False

    def usable(self) -> bool:
        return self.alive and not self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True


def test_pool_retires_a_connection_older_than_max_age() -> None:
    pool = KeepAlivePool(size=1, limit=4, max_age=5.0)
    pool.reserve()
    old = AgedConn(age=6.0)
    pool.give_back(old, reusable=True)  # type: ignore[arg-type]
    assert old.closed  # too old to be pooled: closed cleanly (not aborted)
    assert not old.aborted
    assert pool.open == 0
    assert pool.take() is None  # the request opens a new connection
    pool.reserve()
    young = AgedConn(age=1.0)
    pool.give_back(young, reusable=True)  # type: ignore[arg-type]
    assert not young.closed
    assert pool.take() is young
    pool.give_back(young, reusable=True)  # type: ignore[arg-type]
    young.connected -= 10  # aged while idle: retired when next taken
    assert pool.take() is None
    assert young.closed
    assert not young.aborted
    assert pool.open == 0
    assert not pool.idle


def test_pool_without_max_age_reuses_old_connections() -> None:
    pool = KeepAlivePool(size=1, limit=4)
    pool.reserve()
    ancient = AgedConn(age=1e6)
    pool.give_back(ancient, reusable=True)  # type: ignore[arg-type]
    assert pool.take() is ancient
    assert not ancient.closed


async def test_a_queued_request_is_not_handed_an_expired_connection() -> None:
    pool = KeepAlivePool(size=1, limit=1, max_age=5.0)
    pool.reserve()
    waiter = asyncio.ensure_future(pool.wait())
    await asyncio.sleep(0)
    old = AgedConn(age=6.0)
    pool.give_back(old, reusable=True)  # type: ignore[arg-type]
    assert await waiter is None  # a free slot instead: the waiter opens a new connection
    assert old.closed
    assert pool.open == 1


def test_max_age_and_served_by_field_are_validated() -> None:
    for bad in ({"max_age": 0.0}, {"max_age": -1.0}, {"served_by_field": ""}):
        with pytest.raises(ValueError):
            LoadConfig("http://a/", rate=1, duration=1, **bad).validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="http"):
        LoadConfig("tcp://a:1", rate=1, duration=1, served_by_field="node").validate()
    LoadConfig("http://a/", rate=1, duration=1, max_age=0.3, served_by_field="node").validate()


# served-by: the body under every framing, and the field in it


async def framed_body(data: bytes, *, head: bool = False) -> tuple[int, bool, bytes, bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    body = bytearray()
    status, close = await read_response(reader, head=head, body=body)
    return status, close, bytes(body), await reader.read()


async def test_read_response_keeps_a_2xx_body_under_every_framing() -> None:
    length = b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{"node":"n-1"}NEXT'
    assert await framed_body(length) == (200, False, b'{"node":"n-1"}', b"NEXT")
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'6;ext=1\r\n{"node\r\n8\r\n":"n-2"}\r\n0\r\nT: 1\r\n\r\nNEXT'
    )
    assert await framed_body(chunked) == (200, False, b'{"node":"n-2"}', b"NEXT")
    until_close = b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"node":"n-3"}'
    assert await framed_body(until_close) == (200, True, b'{"node":"n-3"}', b"")
    # not 2xx, HEAD, 204: nothing kept, the framing as without a body
    failed = b'HTTP/1.1 503 x\r\nContent-Length: 14\r\n\r\n{"node":"n-4"}NEXT'
    assert await framed_body(failed) == (503, False, b"", b"NEXT")
    assert await framed_body(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nNEXT", head=True) == (
        200,
        False,
        b"",
        b"NEXT",
    )
    assert await framed_body(b"HTTP/1.1 204 No\r\n\r\nNEXT") == (204, False, b"", b"NEXT")
    # a big body: the first MAX_KEPT_BODY bytes kept, all of it read
    size = MAX_KEPT_BODY + 1000
    big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size + b"NEXT"
    status, _, kept, rest = await framed_body(big)
    assert (status, len(kept), rest) == (200, MAX_KEPT_BODY, b"NEXT")


async def test_read_response_without_a_body_buffer_still_discards() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT")
    reader.feed_eof()
    assert await read_response(reader) == (200, False)
    assert await reader.read() == b"NEXT"


def test_served_by_reads_one_string_field() -> None:
    assert served_by(b'{"node":"node-a","pod":"p"}', "node") == "node-a"
    assert served_by(bytearray(b'{"pod":"p"}'), "pod") == "p"
    assert served_by(b'{"pod":"p"}', "node") == ""  # lacks the field
    assert served_by(b'{"node":7}', "node") == ""  # not a string
    assert served_by(b'["node"]', "node") == ""  # not an object
    assert served_by(b"Hello version: v1\n", "node") == ""  # not JSON
    assert served_by(b"\xff\xfe{", "node") == ""  # not text
    assert served_by(b"[" * 100_000, "node") == ""  # nested too deep


def test_record_served_by_round_trips_and_old_json_reads() -> None:
    record = RequestRecord(3, 0.1, 0.1, 0.2, OK, "keepalive", "reused", 200, served_by="node-b")
    data = record.to_dict()
    assert data["served_by"] == "node-b"
    assert RequestRecord.from_dict(json.loads(json.dumps(data))) == record
    del data["served_by"]  # written before the field existed
    assert RequestRecord.from_dict(data).served_by == ""


# the probe's configuration


def test_probe_config_per_flow_and_kind() -> None:
    config = ProbeConfig(flows=(("echo", "http://echo:8080/"), ("tcp", "tcp://t:9000")), source="node1")
    config.validate()
    keepalive = config.load_config("echo", "http://echo:8080/", "keepalive")
    assert (keepalive.mode, keepalive.rate, keepalive.timeout, keepalive.connections) == (
        "keepalive",
        10,
        3,
        2,
    )
    assert keepalive.max_age == 20
    assert keepalive.served_by_field == "node"
    assert keepalive.retry_stale is False
    new = config.load_config("echo", "http://echo:8080/", "new")
    assert (new.mode, new.max_age, new.retry_stale) == ("new", None, False)
    assert config.load_config("tcp", "tcp://t:9000", "new").served_by_field is None
    assert "\n" not in keepalive.marker


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"flows": ()}, "at least one flow"),
        ({"flows": (("a", "http://a/"), ("a", "http://b/"))}, "twice"),
        ({"flows": (("a b", "http://a/"),)}, "flow name"),
        ({"flows": (("", "http://a/"),)}, "flow name"),
        ({"flows": (("a", "https://a/"),)}, "flow a"),
        ({"flows": (("a", "http://a/"),), "rate": 0.0}, "flow a: rate"),
        ({"source": ""}, "source"),
        ({"source": "node 1"}, "source"),
        ({"kinds": ()}, "kinds"),
        ({"kinds": ("new", "new")}, "kinds"),
        ({"kinds": ("mixed",)}, "kinds"),
        ({"timeout": 0.0}, "timeout"),
        ({"max_age": 0.0}, "max_age"),
        ({"connections": 0}, "connections"),
    ],
)
def test_probe_config_errors(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"flows": (("a", "http://a/"),), "source": "node1", **changes}
    with pytest.raises(ValueError, match=message):
        ProbeConfig(**fields).validate()  # type: ignore[arg-type]


# the lines and their reader


def test_probe_line_is_one_json_object_in_absolute_time() -> None:
    prefix = line_prefix("node1", 'echo-"2"', "keepalive")
    ended = RequestRecord(4, 0.4, 0.401, 0.45, OK, "keepalive", "reused", 200, served_by="node2")
    line = probe_line(prefix, 1000.0, ended)
    assert line.endswith("}\n")
    assert line.count("\n") == 1
    data = json.loads(line)
    assert tuple(data) == LINE_FIELDS
    assert data == {
        "source": "node1",
        "destination": 'echo-"2"',
        "kind": "keepalive",
        "start": pytest.approx(1000.401),
        "end": pytest.approx(1000.45),
        "outcome": OK,
        "detail": "",
        "status": 200,
        "served_node": "node2",
        "connection": "reused",
    }
    never = RequestRecord(5, 0.5, None, 0.5, "overloaded", "keepalive", detail='4096 "requests"\n')
    data = json.loads(probe_line(prefix, 1000.0, never))
    assert data["start"] == pytest.approx(1000.5)  # never started: its scheduled time
    assert (data["status"], data["connection"], data["detail"]) == (None, "", '4096 "requests"\n')


def lines_of(*records: RequestRecord) -> str:
    prefix = line_prefix("n1", "d", "new")
    return "".join(probe_line(prefix, 50.0, r) for r in records)


def test_read_probe_lines_tolerates_a_truncated_last_line() -> None:
    records = [RequestRecord(i, i / 10, i / 10, i / 10 + 0.01, OK, "new", "new", 200) for i in range(3)]
    text = lines_of(*records)
    assert [d["start"] for d in read_probe_lines(text)] == pytest.approx([50.0, 50.1, 50.2])
    for cut in (2, 10, 40):
        truncated = read_probe_lines(text[:-cut])  # killed as it wrote the last line
        assert len(truncated) == 2
    assert len(read_probe_lines(text[:-1])) == 3  # all but the newline: the object is whole
    assert read_probe_lines("") == []
    assert len(read_probe_lines("\n" + text + "\n")) == 3  # blank lines skipped
    failed = RequestRecord(3, 0.3, 0.3, 3.3, TIMEOUT, "new", "new", detail="response")
    assert read_probe_lines(lines_of(failed))[0]["outcome"] == TIMEOUT


def test_read_probe_lines_rejects_a_corrupt_line_in_the_middle() -> None:
    text = lines_of(RequestRecord(0, 0.0, 0.0, 0.1, OK))
    with pytest.raises(ValueError, match="line 2"):
        read_probe_lines(text + '{"source": \n' + text)
    with pytest.raises(ValueError, match="line 1"):
        read_probe_lines("[1, 2]\n" + text)


def test_writer_batches_and_counts(tmp_path: Path) -> None:
    out = tmp_path / "probe.jsonl"
    writer = ProbeWriter(out)
    writer.add(lines_of(RequestRecord(0, 0.0, 0.0, 0.1, OK)), ok=True)
    writer.add(lines_of(RequestRecord(1, 0.1, 0.1, 0.2, CONNECT_ERROR)), ok=False)
    assert out.read_text() == ""  # batched
    writer.flush()
    assert len(read_probe_lines(out.read_text())) == 2
    writer.add(lines_of(RequestRecord(2, 0.2, 0.2, 0.3, OK)), ok=True)
    writer.close()
    assert writer.file.closed
    assert [d["outcome"] for d in read_probe_lines(out.read_text())] == [OK, CONNECT_ERROR, OK]
    assert (writer.requests, writer.failed) == (3, 1)


def test_requests_that_never_ended_are_written_at_the_end(tmp_path: Path) -> None:
    """A request still unrecorded when the schedule ends (an executor stuck past its timeout) is
    written as a timeout; one already written is not written twice."""
    config = ProbeConfig(flows=(("a", "http://a/"),), source="n1", rate=10, duration=0.3)
    writer = ProbeWriter(tmp_path / "probe.jsonl")
    probe = _Probe(config, writer, lambda line: None)
    load = config.load_config("a", "http://a/", "new")
    client = HttpClient(load, Target.parse(load.target))
    run = _FlowLoop(probe, load, client, line_prefix("n1", "a", "new"))
    run.records[1] = RequestRecord(1, 0.1, 0.1, 0.2, OK, "new", "new", 200)
    client.served[1] = "node-a"
    run.write(1)
    run.write(1)
    run.write_rest()
    writer.close()
    lines = read_probe_lines((tmp_path / "probe.jsonl").read_text())
    assert [(d["outcome"], d["served_node"]) for d in lines] == [(OK, "node-a"), (TIMEOUT, ""), (TIMEOUT, "")]
    assert lines[1]["detail"] == "cancelled at the end"
    assert not client.served


# the CLI's errors (they come before any request)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flow", "nourl"], "'nourl' is not NAME=URL"),
        (["--flow", "=http://a/"], "is not NAME=URL"),
        (["--flow", "a=https://a/"], "a: target must be"),
        (["--flow", "a=http://a/", "--flow", "a=http://b/"], "'a' given twice"),
        (["--flow", "a b=http://a/"], "bad flow name"),
        (["--flow", "a=http://a/", "--kinds", "new,mixed"], "--kinds"),
        (["--flow", "a=http://a/", "--kinds", "new,new"], "--kinds"),
    ],
)
def test_probe_cli_rejects_bad_flows(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "probe.jsonl"
    result = CliRunner().invoke(cli, ["app", "probe", "--source", "n1", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_probe_cli_needs_a_flow_a_source_and_an_output(tmp_path: Path) -> None:
    out = str(tmp_path / "probe.jsonl")
    for args in (["--source", "n1", "--out", out], ["--flow", "a=http://a/", "--out", out]):
        result = CliRunner().invoke(cli, ["app", "probe", *args])
        assert result.exit_code == 2
        assert "Missing option" in result.output
