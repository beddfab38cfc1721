"""The local cluster that ``ambit bench mesh`` measures in: built and removed with the `ambit` CLI, read and
driven through the runtime's :class:`~ambit.runtime.handle.ClusterHandle`.

``ambit --cluster C up`` (it detaches the runtime daemon and waits for the pods), ``ca issue`` and
``waypoint apply`` run as subprocesses, as a user runs them; ``down`` (in-process), the pods, their
namespaces, the AMBIENT state, the enrolment label, the Service's address and the pids of the ztunnels and
of pod containers come from the handle (``ambit.bench`` sits above ``ambit.runtime``).

The manifest has the two pods and a Service ``server`` (port 80, ``http``) in front of the server pod: the
L4 rows address the server pod's IP, the L7 rows the Service's cluster IP (a waypoint binds to
service-addressed traffic).

`BenchCluster` owns a fresh temporary directory (manifest, nginx configuration and its 1 KiB file,
certificates, logs). Its `close` always takes the cluster down, stops every process it started, by pid, and
removes the directory. Commands run inside a namespace with ``ip netns exec`` (what ``ambit exec`` does),
which keeps the host filesystem: a pod's command sees the temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ambit.resources.names import CA_SUBDIR
from ambit.runtime.handle import ClusterHandle, HandleError
from ambit.store.paths import cluster_dir
from ambit.store.types import StoreError

AMBIT = str(Path(sys.executable).parent / "ambit")
NAMESPACE = "bench"
SERVICE = "server"  # the Service in front of the server pod (what the L7 rows address)
HTTP_PORT = 80
IPERF_PORT = 5201
PAYLOAD_PATH = "/1k"
PAYLOAD_BYTES = 1024

NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections {nofile}; }}
worker_rlimit_nofile {nofile};
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  server {{
    listen {port} reuseport;
    location / {{ root {dir}/www; }}
  }}
}}
"""

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: server, namespace: {ns}, labels: {{app: server}}}}
spec:
  nodeName: node2
  containers:
  - name: nginx
    image: nginx
    command: [nginx, -c, {dir}/nginx.conf, -g, "daemon off;"]
    ports: [{{containerPort: {http}}}]
  - name: iperf3
    image: iperf3
    command: [iperf3, -s, -p, "{iperf}"]
    ports: [{{containerPort: {iperf}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {service}, namespace: {ns}}}
spec:
  selector: {{app: server}}
  ports: [{{name: http, port: {http}, targetPort: {http}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {ns}, labels: {{app: client}}}}
spec:
  nodeName: node1
  containers:
  - name: idle
    image: busybox
    command: [sleep, infinity]
"""


class BenchError(RuntimeError):
    """The cluster or a tool failed; the message says which command and what it printed."""


@dataclass(frozen=True, slots=True)
class Topology:
    """Addresses and namespaces of the two pods and their nodes, as the cluster reports them."""

    client_ip: str
    server_ip: str
    server_vip: str  # the cluster IP of Service `server`
    client_node_ip: str
    server_node_ip: str
    client_netns: str
    server_netns: str
    client_node_netns: str
    server_node_netns: str


class BenchCluster:
    """A 2-node cluster with the bench pods; see the module docstring. Use as a context manager."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="ambit-bench-mesh-"))
        self.dir.chmod(0o755)  # nginx's workers run as nobody and read www/ from here
        self._procs: list[subprocess.Popen[bytes]] = []
        self._created = False
        self.topology: Topology | None = None
        self.handle = ClusterHandle(name)

    # -- the ambit CLI -------------------------------------------------------------------------------------

    def ambit(self, *args: str, timeout: float = 180.0) -> str:
        proc = subprocess.run(
            [AMBIT, "--cluster", self.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise BenchError(
                f"`ambit {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc.stdout

    @property
    def run_dir(self) -> Path:
        return cluster_dir(self.name)

    @property
    def ca_dir(self) -> Path:
        return self.run_dir / "state" / CA_SUBDIR

    def up(self) -> Topology:
        if self.run_dir.exists():
            raise BenchError(
                f"cluster {self.name} already exists ({self.run_dir}); remove it with "
                f"`ambit --cluster {self.name} down` or pick another name with --cluster"
            )
        www = self.dir / "www"
        www.mkdir(mode=0o755)
        (www / PAYLOAD_PATH.lstrip("/")).write_bytes(b"x" * PAYLOAD_BYTES)
        (self.dir / "nginx.conf").write_text(
            NGINX_CONF.format(dir=self.dir, port=HTTP_PORT, nofile=nofile_limit())
        )
        manifest = self.dir / "bench.yaml"
        manifest.write_text(
            MANIFEST.format(ns=NAMESPACE, service=SERVICE, dir=self.dir, http=HTTP_PORT, iperf=IPERF_PORT)
        )
        self._created = True
        self.ambit("up", "--nodes", "2", "-f", str(manifest), timeout=300)
        self.topology = self._topology()
        return self.topology

    def _topology(self) -> Topology:
        pods = {p["metadata"]["name"]: p for p in self.handle.pods(NAMESPACE)}
        try:
            client, server = pods["client"]["status"], pods["server"]["status"]
            client_net = self.handle.pod_net("client", NAMESPACE)
            server_net = self.handle.pod_net("server", NAMESPACE)
            vip = self.handle.get("Service", SERVICE, NAMESPACE)["spec"]["clusterIP"]
        except (KeyError, HandleError, StoreError) as exc:
            raise BenchError(f"the bench pods have no network yet: {exc}") from exc
        return Topology(
            client_ip=client["podIP"],
            server_ip=server["podIP"],
            server_vip=str(vip),
            client_node_ip=client["hostIP"],
            server_node_ip=server["hostIP"],
            client_netns=client_net.netns,
            server_netns=server_net.netns,
            client_node_netns=client_net.node_netns,
            server_node_netns=server_net.node_netns,
        )

    def set_ambient(self, enrolled: bool, timeout: float = 60.0) -> None:
        """Label (or unlabel) the bench namespace; wait until both pods show it in the status and in the data
        plane (captured and served by their ztunnels, or neither)."""
        self.handle.set_ambient(NAMESPACE, enrolled)
        deadline = time.monotonic() + timeout
        want = "yes" if enrolled else "no"
        while True:
            ambient = self.ambient_status()
            if ambient and all(value == want for value in ambient.values()):
                # the label is seen at once; wait for the data plane too (captured + served, or neither)
                meshed = self.handle.meshed(NAMESPACE)
                if meshed and all(value is enrolled for value in meshed.values()):
                    return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"bench pods did not become AMBIENT {want} within {timeout:.0f} s: {ambient}"
                )
            time.sleep(0.3)

    def ambient_status(self) -> dict[str, str]:
        """Pod name → the AMBIENT column of `ambit status` ("yes"/"no") for the bench namespace."""
        return {name: "yes" if on else "no" for name, on in self.handle.status().ambient(NAMESPACE).items()}

    def ztunnel_pids(self) -> dict[str, int]:
        """``ztunnel-node1`` → pid, from the runtime's pid files (re-read: the supervisor may restart one)."""
        return self.handle.ztunnel_pids()

    # -- commands inside namespaces ------------------------------------------------------------------------

    @staticmethod
    def netns_argv(netns: str, argv: Sequence[str], nofile: int | None = None) -> list[str]:
        limit = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] if nofile else []
        return [*limit, "ip", "netns", "exec", netns, *argv]

    def run_in(self, netns: str, argv: Sequence[str], timeout: float) -> str:
        """Run `argv` inside `netns` to completion; its stdout, or BenchError with its output."""
        full = self.netns_argv(netns, argv)
        try:
            proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from exc
        if proc.returncode != 0:
            raise BenchError(
                f"`{' '.join(argv)}` in {netns} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc.stdout

    def start_in(
        self,
        netns: str,
        argv: Sequence[str],
        *,
        nofile: int | None = None,
        stdin: int | None = None,
        stdout: int | None = None,
        log: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside `netns` (execs straight through prlimit and ip netns exec: pid is the tool's).

        The process is recorded and stopped by `close` if the caller has not stopped it.
        """
        stderr = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
        try:
            proc = subprocess.Popen(
                self.netns_argv(netns, argv, nofile),
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=stdout if stdout is not None else subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        finally:
            if log is not None and not isinstance(stderr, int):
                stderr.close()
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        """Close its stdin (a child waiting for EOF exits), then SIGTERM by pid, then SIGKILL."""
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if proc in self._procs:
            self._procs.remove(proc)

    # -- teardown ------------------------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop our processes, take the cluster down and remove the directory; the problems met, if any."""
        problems = []
        for proc in reversed(list(self._procs)):
            try:
                self.stop(proc)
            except Exception as exc:  # keep tearing down
                problems.append(f"stopping pid {proc.pid}: {exc}")
        if self._created:
            try:
                self.handle.down()
            except Exception as exc:  # keep tearing down
                problems.append(f"ambit down: {exc}")
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems

    def __enter__(self) -> BenchCluster:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        problems = self.close()
        if problems and exc is None:
            raise BenchError("teardown: " + "; ".join(problems))


def tool_versions() -> dict[str, str]:
    """nginx, wrk, iperf3 and stunnel as installed (the first line each prints about itself)."""

    def first_line(argv: list[str], marker: str) -> str:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "not installed"
        for line in (proc.stdout + proc.stderr).splitlines():
            if marker in line:
                return line.strip()
        return "unknown"

    return {
        "nginx": first_line(["nginx", "-v"], "nginx version").removeprefix("nginx version: "),
        "wrk": first_line(["wrk", "-v"], "wrk ").split(" Copyright")[0].strip(),
        "iperf3": first_line(["iperf3", "--version"], "iperf "),
        "stunnel": first_line(["stunnel", "-version"], "stunnel ").split(" on ")[0],
        "stunnel_openssl": first_line(["stunnel", "-version"], "Compiled with").removeprefix(
            "Compiled with "
        ),
    }


def nofile_limit() -> int:
    """The hard RLIMIT_NOFILE of this process: how far a process started here may raise its own."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else int(hard)


REQUIRED_TOOLS = ("ip", "nft", "prlimit", "nginx", "wrk", "iperf3", "stunnel", "curl")


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(f"{what}: not JSON: {text[:200]!r}") from exc
    if not isinstance(data, dict):
        raise BenchError(f"{what}: not a JSON object")
    return data
