"""The gRPC echo on loopback: the server in-process (port 0) and the checking client against it —
Unary answers and their ``x-echo-pod`` trailer, the bidi Stream answered message by message, Fail's
NOT_FOUND status and details — plus ``ambit app grpc-echo call`` and ``serve`` as processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ambit.apps.grpc_echo import EchoServer, call, run_call, split_target

POD = "grpc-echo-7f9c-abcde"
READY = re.compile(r"ambit-grpc-echo ready pod=(\S+) port=(\d+)")


def ambit() -> list[str]:
    script = Path(sys.executable).with_name("ambit")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from ambit.cli import main; main()"]


@pytest.fixture
async def server() -> AsyncIterator[EchoServer]:
    async with EchoServer(POD, port=0, bind="127.0.0.1", grace=1.0) as started:
        yield started


def expected(unary: int, stream: int, pod: str = POD) -> dict[str, object]:
    return {
        "unary": [f"{pod}: unary-{i}" for i in range(unary)],
        "unary_trailers": {"x-echo-pod": pod},
        "stream": [f"{pod}: stream-{i}" for i in range(stream)],
        "fail_code": "NOT_FOUND",
        "fail_details": "no such thing",
        "errors": [],
    }


async def test_the_client_sees_every_answer_status_and_trailer(server: EchoServer) -> None:
    assert server.port > 0
    assert server.ready_line() == f"ambit-grpc-echo ready pod={POD} port={server.port}"
    result = await call(f"127.0.0.1:{server.port}", unary=3, stream=5, rpc_timeout=5.0)
    assert result.ok, result.errors
    assert json.loads(result.to_json()) == expected(3, 5)


async def test_a_host_name_is_resolved_by_the_system_resolver(server: EchoServer) -> None:
    result = await call(f"localhost:{server.port}", unary=1, stream=1, rpc_timeout=5.0)
    assert json.loads(result.to_json()) == expected(1, 1)


async def test_no_calls_of_a_kind_still_checks_fail(server: EchoServer) -> None:
    result = await call(f"127.0.0.1:{server.port}", unary=0, stream=0, rpc_timeout=5.0)
    assert result.ok, result.errors
    assert (result.unary, result.unary_trailers, result.stream) == ([], {}, [])
    assert (result.fail_code, result.fail_details) == ("NOT_FOUND", "no such thing")


async def test_a_refused_connection_is_not_ok() -> None:
    async with EchoServer(POD, port=0, bind="127.0.0.1") as gone:
        port = gone.port
    result = await call(f"127.0.0.1:{port}", unary=1, stream=1, rpc_timeout=5.0)
    assert not result.ok
    assert result.unary == [] and result.stream == []
    assert result.fail_code == "UNAVAILABLE"
    assert len(result.errors) == 3  # Unary #0, Stream, Fail


def test_targets_are_host_and_port() -> None:
    assert split_target("grpc-echo:7070") == ("grpc-echo", 7070)
    assert split_target("[::1]:7070") == ("::1", 7070)
    for bad in ("grpc-echo", "grpc-echo:", ":7070", "grpc-echo:0", "grpc-echo:70000", "h:x"):
        with pytest.raises(ValueError):
            split_target(bad)


async def test_the_call_command_prints_the_json_and_exits_0(server: EchoServer) -> None:
    args = ["app", "grpc-echo", "call", "--target", f"127.0.0.1:{server.port}", "--unary", "2"]
    proc = await asyncio.create_subprocess_exec(
        *ambit(), *args, "--stream", "3", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(20):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 1, lines
    assert json.loads(lines[0]) == expected(2, 3)


def test_the_serve_command_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    argv = [*ambit(), "app", "grpc-echo", "serve", "--port", "0", "--bind", "127.0.0.1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "POD_NAME": POD}
        )
    try:
        deadline = time.monotonic() + 15
        while not (match := READY.search(log.read_text())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert match.group(1) == POD
        result = run_call(f"127.0.0.1:{match.group(2)}", unary=1, stream=2, timeout=5.0)
        assert json.loads(result.to_json()) == expected(1, 2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
