"""The real commands as processes: ``ambit app sample`` (and ``python -m ambit.apps.sample``) serving,
logging and stopping gracefully on SIGTERM; ``ambit app load`` writing its records as JSON."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from ambit.apps.load import LoadResult
from ambit.apps.load.outcomes import CONNECT_ERROR, OK
from ambit.cli import cli

READY = re.compile(r"ambit-sample ready pod=(\S*) node=(\S*) http=([\d,]*) tcp=([\d,]*)")


def ambit() -> list[str]:
    script = Path(sys.executable).with_name("ambit")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from ambit.cli import main; main()"]


class SampleProcess:
    """One sample-app process, its stdout in a file; killed by pid if a test leaves it running."""

    def __init__(self, log: Path, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.http: list[int] = []
        self.tcp: list[int] = []

    def wait_ready(self, timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"sample app exited {self.proc.returncode}: {self.log.read_text()}")
            if match := READY.search(self.log.read_text()):
                self.http = [int(p) for p in match.group(3).split(",") if p]
                self.tcp = [int(p) for p in match.group(4).split(",") if p]
                return match
            time.sleep(0.05)
        pytest.fail(f"sample app not ready in {timeout}s: {self.log.read_text()}")

    def terminate(self, timeout: float = 10.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def processes() -> Iterator[list[SampleProcess]]:
    started: list[SampleProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.cleanup()


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def tcp_exchange(port: int, data: bytes, expect: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        got = b""
        while len(got) < expect:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_ambit_app_sample_and_load(tmp_path: Path, processes: list[SampleProcess]) -> None:
    argv = [*ambit(), "app", "sample", "--http-port", "0", "--http-port", "0", "--tcp-port", "0"]
    argv += ["--pod", "helloworld-v1-x", "--node", "node-a", "--version", "v1", "--bind", "127.0.0.1"]
    app = SampleProcess(tmp_path / "sample.log", argv)
    processes.append(app)
    match = app.wait_ready()
    assert match.group(1, 2) == ("helloworld-v1-x", "node-a")
    assert len(app.http) == 2
    assert len(app.tcp) == 1

    status, body = get(app.http[1], "/hello")
    assert (status, body) == (200, b"Hello version: v1, instance: helloworld-v1-x\n")
    status, body = get(app.http[0], "/productpage")
    echo = json.loads(body)
    assert status == 200
    assert (echo["pod"], echo["node"], echo["namespace"]) == ("helloworld-v1-x", "node-a", "default")
    assert echo["peer"].startswith("127.0.0.1:")
    assert tcp_exchange(app.tcp[0], b"ping\n", 5) == b"ping\n"

    out = tmp_path / "load.json"
    target = f"http://127.0.0.1:{app.http[0]}/productpage"
    load_args = ["--rate", "100", "--duration", "1", "--mode", "mixed", "--marker", "evt", "--json", str(out)]
    load = subprocess.run(
        [*ambit(), "app", "load", target, *load_args, "--strict"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert load.returncode == 0, load.stdout + load.stderr
    assert "outcomes" in load.stdout
    result = LoadResult.from_json(out.read_text())
    assert result.outcomes() == {OK: 100}
    assert result.config["mode"] == "mixed"
    assert [s.ok for s in result.by_second()] == [100]
    assert "X-Request-Id" not in out.read_text()  # records, not requests

    # SIGTERM with a request in flight: it completes, then the process exits 0
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, app.http[0], "/delay/1")
        time.sleep(0.4)
        begin = time.monotonic()
        assert app.terminate() == 0
        assert slow.result(timeout=10)[0] == 200
    assert time.monotonic() - begin < 6
    log = app.log.read_text()
    assert "GET /hello 200" in log
    assert "GET /delay/1 200" in log
    assert "evt" not in log  # the log shows paths, not headers
    assert log.count("GET /productpage 200") >= 101


def test_python_module_entry_with_identity_from_the_environment(
    tmp_path: Path, processes: list[SampleProcess]
) -> None:
    env = {**os.environ, "POD_NAME": "tcp-echo-7", "NODE_NAME": "node-b", "POD_NAMESPACE": "demo"}
    env["SERVICE_VERSION"] = "v2"
    argv = [sys.executable, "-m", "ambit.apps.sample", "--http-port", "0", "--tcp-port", "0"]
    argv += ["--tcp-prefix", "hello", "--bind", "127.0.0.1", "--quiet"]
    app = SampleProcess(tmp_path / "module.log", argv, env=env)
    processes.append(app)
    assert app.wait_ready().group(1, 2) == ("tcp-echo-7", "node-b")
    status, body = get(app.http[0], "/")
    assert status == 200
    echo = json.loads(body)
    assert (echo["pod"], echo["node"], echo["namespace"], echo["version"]) == (
        "tcp-echo-7",
        "node-b",
        "demo",
        "v2",
    )
    assert tcp_exchange(app.tcp[0], b"world\n", 12) == b"hello world\n"
    assert app.terminate() == 0
    lines = app.log.read_text().splitlines()  # --quiet: the ready line and the drain's two, no request lines
    assert len(lines) == 3, lines
    assert " drain start " in lines[1]
    assert " drain done " in lines[2]


def test_load_cli_strict_exit_and_json_against_a_closed_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "refused.json"
    args = ["app", "load", f"tcp://127.0.0.1:{port}", "--rate", "50", "--duration", "0.2", "--json", str(out)]
    lenient = CliRunner().invoke(cli, args)
    assert lenient.exit_code == 0, lenient.output
    assert CONNECT_ERROR in lenient.output
    result = LoadResult.from_json(out.read_text())
    assert result.outcomes() == {CONNECT_ERROR: 10}
    assert result.failed == 10
    strict = CliRunner().invoke(cli, [*args, "--strict"])
    assert strict.exit_code == 1
