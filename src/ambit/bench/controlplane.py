"""``ambit bench controlplane``: one control-plane replica serving a synthetic cluster to many proxies.

Topology, each box its own OS process::

    store (cp_store) <- replica (`ambit controlplane`) <- N xDS clients (cp_client), gRPC + mTLS
         ^
         bench (this module): writes the synthetic cluster, then one pod change at a time

1. A CA is created and saved to ``<tmp>/state/ca``; the store starts on ``<tmp>/s``.
2. The synthetic cluster (``ambit.bench.cp_objects``) is written through the store client in
   transactions of 1,000 objects (the store validates every object, as for ``ambit apply``).
3. The replica starts as the real CLI, ``ambit controlplane`` on two free loopback ports, and is
   ready once ``/healthz/ready`` answers 200 (it has listed the store and translated once).
4. The clients start ``Plan.batch`` at a time, each batch synced before the next starts (so 100
   Python start-ups do not fight over two cores at once), each with its own node credential
   (``spiffe://cluster.local/node/node-<i>``), at nice ``Plan.client_nice`` (``cp_client``).
5. ``Plan.changes`` times: one pod's readiness flips (a different pod each time). The bench takes
   ``CLOCK_MONOTONIC`` just before the store write; each client reports when gRPC handed it the
   response that carried the pod's workload and when its state store had it applied
   (``CLOCK_MONOTONIC`` is one clock for every process of the machine), with the response's size
   and resources. Meanwhile the bench polls the replica's ``/debug/syncz`` until it has counted a
   response to every client. Then it waits ``Plan.settle`` seconds and collects anything else the
   clients received. CPU time (``/proc/<pid>/stat``) of every process and the replica's run-queue
   wait (``schedstat``) are read around each change; ``/metrics`` too (translation time, push
   bytes, convergence time).
6. The replica's memory (VmRSS and VmHWM from ``/proc/<pid>/status``, Pss from ``smaps_rollup``)
   is read with no clients, with all clients synced, and after the changes.

Every process is stopped on any exit (Ctrl-C and SIGTERM included): clients and store by closing
their stdin (``ambit.bench.procs``), the replica with SIGTERM, then SIGKILL; the replica also gets
SIGTERM if this process dies (``setpriv --pdeathsig``, where util-linux has it). The temporary
directory is removed. With ``$AMBIT_BENCH_PROFILE`` set to a directory the replica runs under
cProfile and writes ``controlplane-<pid>.prof`` there (main thread only: translation itself runs
in a worker thread), and the store ``store-<pid>.prof``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

from ambit.bench.child import PROFILE_ENV, credential_json
from ambit.bench.cp_objects import Obj, Shape, is_ready, objects, with_readiness
from ambit.bench.procs import Child, ChildError, Children, JsonObject
from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import issue
from ambit.model.identity import NodeIdentity
from ambit.store.client import StoreClient
from ambit.store.types import Op

TRUST_DOMAIN = "cluster.local"
CA_SUBDIR = "ca"  # ControlPlane reads <state-dir>/ca
_WRITE_BATCH = 1000  # operations per store transaction while populating
_START_TIMEOUT = 120.0
_SYNC_TIMEOUT = 180.0
_PLANE_STOP_GRACE = 15.0
_PUSH_POLL = 0.02  # seconds between /debug/syncz reads while a change is pushed
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Plan:
    shape: Shape
    clients: int
    changes: int
    batch: int = 10  # clients started together (each batch synced before the next)
    settle: float = 1.0  # quiet seconds after every change, before the next one
    change_timeout: float = 60.0  # how long every client gets to see a change
    # added to the clients' nice value: 19 lets the replica (and the store) have the CPUs first, as
    # if the proxies ran on other machines; their own work on a change still queues behind each other
    client_nice: int = 19

    def __post_init__(self) -> None:
        if self.clients < 1 or self.changes < 1 or self.batch < 1:
            raise ValueError("clients, changes and batch must be at least 1")

    @classmethod
    def full(cls) -> Plan:
        return cls(Shape(nodes=100, pods=2000, services=1000, namespaces=10), clients=100, changes=5)

    @classmethod
    def quick(cls) -> Plan:
        return cls(Shape(nodes=5, pods=50, services=25, namespaces=5), clients=3, changes=2, settle=0.3)


@dataclass(frozen=True, slots=True)
class Memory:
    """One reading of a process's memory, KiB."""

    rss_kib: int
    hwm_kib: int  # peak RSS since the process started
    pss_kib: int

    @classmethod
    def of(cls, pid: int) -> Memory:
        status: dict[str, int] = {}
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    status[key] = int(rest.split()[0])
        pss = 0
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
        return cls(status.get("VmRSS", 0), status.get("VmHWM", 0), pss)


@dataclass(frozen=True, slots=True)
class ClientChange:
    """What one client received between one change and the next."""

    latency_s: float | None  # store write -> the workload applied in this client's state; None: never
    received_s: float | None  # store write -> gRPC handed the response to the client (before decoding)
    apply_cpu_s: float | None  # CPU time of applying that response to the client's state store
    responses: int
    bytes: int  # protobuf size of those responses
    resources: int  # resources carried by those responses
    max_resources_per_response: int
    status_ok: bool  # the workload arrived with the expected health status


@dataclass(slots=True)
class Change:
    index: int
    pod: str  # namespace/name
    uid: str
    ready: bool  # the pod's readiness after the change
    write_s: float  # the store write, until it was acknowledged
    clients: list[ClientChange]
    server_push_bytes: float  # pilot_xds_push_bytes_total delta
    server_pushes: float  # pilot_xds_pushes_total delta
    translations: int
    translation_s: float  # mean ambit_translation_seconds of those translations
    convergence_s: float  # mean pilot_proxy_convergence_time of those pushes (includes the debounce)
    pushed_s: float  # store write -> the replica had sent a response to every client (/debug/syncz)
    # seconds over the change's window: CPU of the replica, the store, the clients (sum); and how long
    # the replica's threads were runnable but waiting for a CPU (other processes had them)
    cpu_s: dict[str, float]
    window_s: float  # that window

    @property
    def latencies(self) -> list[float]:
        return [c.latency_s for c in self.clients if c.latency_s is not None]

    @property
    def received_max_s(self) -> float:
        received = [c.received_s for c in self.clients if c.received_s is not None]
        return max(received) if received and not self.missed else float("inf")

    @property
    def apply_cpu_median_s(self) -> float:
        applies = [c.apply_cpu_s for c in self.clients if c.apply_cpu_s is not None]
        return statistics.median(applies) if applies else float("nan")

    @property
    def missed(self) -> int:
        return sum(1 for c in self.clients if c.latency_s is None or not c.status_ok)

    @property
    def min_s(self) -> float:
        return min(self.latencies) if self.latencies else float("nan")

    @property
    def p50_s(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def max_s(self) -> float:
        return max(self.latencies) if self.latencies and not self.missed else float("inf")

    @property
    def bytes_per_client(self) -> float:
        return statistics.median(c.bytes for c in self.clients) if self.clients else 0.0

    @property
    def max_bytes_per_client(self) -> int:
        return max((c.bytes for c in self.clients), default=0)

    @property
    def responses_per_client(self) -> int:
        return max((c.responses for c in self.clients), default=0)

    @property
    def resources_per_response(self) -> int:
        return max((c.max_resources_per_response for c in self.clients), default=0)


@dataclass(slots=True)
class Result:
    plan: Plan
    objects: int = 0
    setup_s: float = 0.0  # writing the synthetic cluster into the store
    plane_ready_s: float = 0.0  # replica process start -> /healthz/ready
    initial_translation_s: float = 0.0
    sync_all_s: float = 0.0  # first client spawned -> last client synced
    client_sync_s: list[float] = field(default_factory=list)  # per client: process spawn -> synced
    initial_resources: int = 0  # resources in a client after the initial sync
    initial_bytes: int = 0  # response bytes of the initial sync, per client (median)
    client_rss_kib: int = 0  # median client RSS right after its sync
    memory: dict[str, Memory] = field(default_factory=dict)  # replica, by moment
    store_memory: Memory | None = None
    changes: list[Change] = field(default_factory=list)
    plane_warnings: int = 0  # WARNING lines in the replica's log
    plane_errors: int = 0  # ERROR / CRITICAL / Traceback lines in the replica's log
    plane_command: str = ""

    @property
    def time_to_all_s(self) -> float:
        """The figure for the 1 s target: the median over the changes of the slowest client's latency."""
        return statistics.median(c.max_s for c in self.changes) if self.changes else float("nan")

    @property
    def worst_s(self) -> float:
        return max((c.max_s for c in self.changes), default=float("nan"))

    @property
    def bytes_per_client(self) -> float:
        return statistics.median(c.bytes_per_client for c in self.changes) if self.changes else 0.0

    @property
    def peak_rss_kib(self) -> int:
        return max((m.hwm_kib for m in self.memory.values()), default=0)


# -- the replica process ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _with_parent_death_signal(argv: list[str]) -> list[str]:
    """`argv` run so that it gets SIGTERM when this process dies (util-linux ``setpriv``), if available."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    if setpriv is None:
        return argv
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


def ambit_executable() -> str:
    """The ``ambit`` console script of the running interpreter's environment."""
    beside = Path(sys.executable).with_name("ambit")
    if beside.exists():
        return str(beside)
    found = shutil.which("ambit")
    if found is None:
        raise ChildError("cannot find the `ambit` command (is ambit installed in this environment?)")
    return found


class Plane:
    """The replica: ``ambit controlplane`` in its own session, its output in a log file."""

    def __init__(self, argv: Sequence[str], log_path: Path, http_port: int) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.http_port = http_port
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                _with_parent_death_signal(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C at the terminal reaches only the bench
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise ChildError(f"the control plane exited with {code}:\n{self.log_tail()}")

    def http(self, path: str, timeout: float = 10.0) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return int(response.status), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError):
                if self.http("/healthz/ready", timeout=2.0)[0] == 200:
                    return
            time.sleep(0.05)
        raise ChildError(f"the control plane was not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def metrics(self) -> dict[str, float]:
        self._check_alive()
        status, text = self.http("/metrics")
        if status != 200:
            raise ChildError(f"the control plane's /metrics answered {status}")
        return parse_metrics(text)

    def responses(self) -> int:
        """xDS responses this replica has sent so far (``/debug/syncz``)."""
        status, text = self.http("/debug/syncz")
        if status != 200:
            raise ChildError(f"the control plane's /debug/syncz answered {status}")
        return int(json.loads(text)["responses"])

    def wait_responses(self, count: int, deadline: float) -> int | None:
        """CLOCK_MONOTONIC ns when the replica had sent `count` responses in all (None: not by `deadline`)."""
        while time.monotonic() < deadline:
            self._check_alive()
            if self.responses() >= count:
                return time.monotonic_ns()
            time.sleep(_PUSH_POLL)
        return None

    def memory(self) -> Memory:
        self._check_alive()
        return Memory.of(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM (the CLI closes the replica cleanly), then SIGKILL if it lingers."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(_PLANE_STOP_GRACE)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            self._log.close()

    def __enter__(self) -> Plane:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        except BaseException:  # a second Ctrl-C while waiting: do not leave it running
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            raise

    def log_counts(self) -> tuple[int, int]:
        """(WARNING lines, ERROR/CRITICAL/Traceback lines) in the replica's log so far."""
        warnings = errors = 0
        with contextlib.suppress(OSError), open(self.log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if " WARNING " in line:
                    warnings += 1
                elif " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                    errors += 1
        return warnings, errors


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc, in clock ticks)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def run_queue_wait_seconds(pid: int) -> float:
    """Seconds the threads of a process spent runnable but waiting for a CPU.

    From ``/proc/<pid>/task/*/schedstat``; threads that already ended are not counted."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, ValueError, IndexError),
                open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f,
            ):
                total += int(f.read().split()[1])
    return total / 1e9


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> metric name (labels dropped) -> sum of its samples."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name = head.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def _delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


# -- the store ---------------------------------------------------------------------------------------------


async def _populate(socket_path: Path, shape: Shape) -> list[Obj]:
    """Write the synthetic cluster; returns the stored pods (with their uids), in creation order."""
    pods: list[Obj] = []
    async with StoreClient(socket_path, timeout=300.0) as store:
        batch: list[Op] = []

        async def flush() -> None:
            result = await store.transaction(batch)
            pods.extend(
                r.object for r in result.results if r.object is not None and r.object.get("kind") == "Pod"
            )
            batch.clear()

        for obj in objects(shape):
            batch.append(Op("apply", obj))
            if len(batch) >= _WRITE_BATCH:
                await flush()
        if batch:
            await flush()
    return pods


async def _write_pod(socket_path: Path, pod: Obj) -> tuple[int, int, Obj]:
    """Apply `pod`; (CLOCK_MONOTONIC ns just before the write, when it was acknowledged, stored object)."""
    async with StoreClient(socket_path) as store:
        await store.health()  # the connection is open before the clock starts
        started = time.monotonic_ns()
        result = await store.apply(pod)
        acked = time.monotonic_ns()
    if result.object is None:
        raise ChildError(f"the store did not return the pod it stored: {result}")
    return started, acked, result.object


# -- clients -----------------------------------------------------------------------------------------------


def _next_message(child: Child, deadline: float) -> JsonObject | None:
    """The child's next line, or None when none came before `deadline` (the child still running)."""
    try:
        return child.receive(max(deadline - time.monotonic(), 0.001))
    except ChildError:
        if child.proc.poll() is None:
            return None  # a timeout: the child is alive and had nothing to say
        raise


def _start_clients(
    children: Children,
    *,
    ca: CertificateAuthority,
    plan: Plan,
    grpc_port: int,
    result: Result,
    progress: Callable[[str], None],
) -> list[Child]:
    clients: list[Child] = []
    bundle = ca.trust_bundle
    first_spawn = time.monotonic_ns()
    last_synced = first_spawn
    resources: list[int] = []
    initial_bytes: list[int] = []
    rss: list[int] = []
    for start in range(0, plan.clients, plan.batch):
        batch = range(start, min(start + plan.batch, plan.clients))
        progress(f"starting xDS clients {batch.start + 1}-{batch.stop} of {plan.clients}")
        spawned: list[tuple[Child, int]] = []
        for i in batch:
            name = f"node-{i}"
            credential = credential_json(issue(ca, NodeIdentity(TRUST_DOMAIN, name)), bundle)
            config = {"name": name, "port": grpc_port, "credential": credential, "nice": plan.client_nice}
            child = children.start(f"xds client {name}", "ambit.bench.cp_client", config)
            spawned.append((child, time.monotonic_ns()))
        for child, spawned_ns in spawned:
            message = child.receive(_SYNC_TIMEOUT)
            if not message.get("synced"):
                raise ChildError(f"{child.name} sent {message} before it synced")
            synced_ns = int(message["synced_ns"])
            last_synced = max(last_synced, synced_ns)
            result.client_sync_s.append((synced_ns - spawned_ns) / 1e9)
            resources.append(int(message["resources"]))
            initial_bytes.append(int(message["bytes"]))
            rss.append(int(message["rss_kib"]))
            clients.append(child)
    result.sync_all_s = (last_synced - first_spawn) / 1e9
    result.initial_resources = min(resources)
    if max(resources) != min(resources):
        raise ChildError(f"clients synced different numbers of resources: {min(resources)}..{max(resources)}")
    result.initial_bytes = int(statistics.median(initial_bytes))
    result.client_rss_kib = int(statistics.median(rss))
    return clients


def _names(message: JsonObject) -> list[str]:
    names = message.get("names")
    return [str(n) for n in names] if isinstance(names, list) else []


def _client_change(messages: list[JsonObject], wanted: str, status: str, started_ns: int) -> ClientChange:
    arrival = next((m for m in messages if wanted in _names(m)), None)
    latency = received = apply = None
    if arrival is not None:
        latency = (int(arrival["t_ns"]) - started_ns) / 1e9
        received = (int(arrival["received_ns"]) - started_ns) / 1e9
        apply = int(arrival["apply_cpu_ns"]) / 1e9
    status_ok = (
        arrival is not None and (arrival.get("workloads") or {}).get(wanted, {}).get("status") == status
    )

    def count(m: JsonObject) -> int:
        names = m.get("names")
        return len(names) if isinstance(names, list) else int(names or 0)

    return ClientChange(
        latency_s=latency,
        received_s=received,
        apply_cpu_s=apply,
        responses=len(messages),
        bytes=sum(int(m.get("size", 0)) for m in messages),
        resources=sum(count(m) for m in messages),
        max_resources_per_response=max((count(m) for m in messages), default=0),
        status_ok=status_ok,
    )


def _change(
    index: int,
    *,
    plan: Plan,
    plane: Plane,
    store: Child,
    store_socket: Path,
    clients: list[Child],
    pods: list[Obj],
) -> Change:
    p = (index * max(1, len(pods) // plan.changes) + index) % len(pods)
    stored = pods[p]
    ready = not is_ready(stored)
    meta = stored["metadata"]
    wanted = f"wl/{meta['uid']}"
    before = plane.metrics()
    responses_before = plane.responses()
    cpu_before = _cpu(plane, store, clients)
    started_ns, acked_ns, pods[p] = asyncio.run(_write_pod(store_socket, with_readiness(stored, ready)))
    deadline = time.monotonic() + plan.change_timeout
    pushed_ns = plane.wait_responses(responses_before + len(clients), deadline)
    received: list[list[JsonObject]] = []
    for child in clients:
        messages: list[JsonObject] = []
        while not any(wanted in _names(m) for m in messages):
            message = _next_message(child, deadline)
            if message is None:
                break
            messages.append(message)
        received.append(messages)
    settle_until = time.monotonic() + plan.settle  # anything else this change caused arrives by then
    time.sleep(plan.settle)
    for child, messages in zip(clients, received, strict=True):
        while (message := _next_message(child, settle_until)) is not None:
            messages.append(message)
    cpu = {role: used - cpu_before[role] for role, used in _cpu(plane, store, clients).items()}
    window_s = (time.monotonic_ns() - started_ns) / 1e9
    after = plane.metrics()
    translations = int(_delta(after, before, "ambit_translation_seconds_count"))
    pushes = _delta(after, before, "pilot_proxy_convergence_time_count")
    status = "HEALTHY" if ready else "UNHEALTHY"
    return Change(
        index=index + 1,
        pod=f"{meta.get('namespace', 'default')}/{meta['name']}",
        uid=str(meta["uid"]),
        ready=ready,
        write_s=(acked_ns - started_ns) / 1e9,
        clients=[_client_change(m, wanted, status, started_ns) for m in received],
        server_push_bytes=_delta(after, before, "pilot_xds_push_bytes_total"),
        server_pushes=_delta(after, before, "pilot_xds_pushes_total"),
        translations=translations,
        translation_s=(
            _delta(after, before, "ambit_translation_seconds_sum") / translations if translations else 0.0
        ),
        convergence_s=_delta(after, before, "pilot_proxy_convergence_time_sum") / pushes if pushes else 0.0,
        pushed_s=float("inf") if pushed_ns is None else (pushed_ns - started_ns) / 1e9,
        cpu_s=cpu,
        window_s=window_s,
    )


def _cpu(plane: Plane, store: Child, clients: list[Child]) -> dict[str, float]:
    return {
        "replica": cpu_seconds(plane.pid),
        "replica waiting for a CPU": run_queue_wait_seconds(plane.pid),
        "store": store.cpu_seconds(),
        "clients": sum(c.cpu_seconds() for c in clients),
    }


# -- the run -----------------------------------------------------------------------------------------------


def _plane_argv(root: Path, store_socket: Path, grpc_port: int, http_port: int) -> list[str]:
    argv = [
        ambit_executable(),
        "controlplane",
        "--store-socket",
        str(store_socket),
        "--state-dir",
        str(root / "state"),
        "--listen",
        "127.0.0.1",
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(http_port),
    ]
    profile_dir = os.environ.get(PROFILE_ENV)
    if profile_dir:
        out = Path(profile_dir) / f"controlplane-{os.getpid()}.prof"
        argv = [sys.executable, "-m", "cProfile", "-o", str(out), *argv]
    return argv


def _interrupted(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(plan: Plan, progress: Callable[[str], None] = lambda _m: None) -> Result:
    """Run the whole benchmark once; see the module docstring.

    A SIGTERM is turned into KeyboardInterrupt while it runs (in the main thread), so it too stops
    every process and removes the temporary directory."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupted) if main_thread else None
    try:
        return _run(plan, progress)
    finally:
        if previous is not None:  # None: not installed from Python (or not the main thread)
            signal.signal(signal.SIGTERM, previous)


def _run(plan: Plan, progress: Callable[[str], None]) -> Result:
    result = Result(plan)
    root = Path(tempfile.mkdtemp(prefix="ambit-bench-cp-"))
    try:
        progress("creating the CA")
        ca = CertificateAuthority.create(TRUST_DOMAIN)
        ca.save(root / "state" / CA_SUBDIR)
        with Children() as boxes:
            store = boxes.start(
                "store",
                "ambit.bench.cp_store",
                {"name": "store", "directory": str(root / "store"), "socket": str(root / "s")},
            )
            store_socket = Path(store.receive(_START_TIMEOUT)["socket"])
            shape = plan.shape
            progress(
                f"writing {shape.nodes} nodes, {shape.namespaces} namespaces, {shape.services} services, "
                f"{shape.pods} pods"
            )
            started = time.monotonic()
            pods = asyncio.run(_populate(store_socket, shape))
            result.setup_s = time.monotonic() - started
            result.objects = shape.nodes + shape.namespaces + shape.services + shape.pods
            progress("starting the control plane")
            grpc_port, http_port = free_port(), free_port()
            argv = _plane_argv(root, store_socket, grpc_port, http_port)
            result.plane_command = " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))
            started = time.monotonic()
            with Plane(argv, root / "controlplane.log", http_port) as plane:
                plane.wait_ready(_START_TIMEOUT)
                result.plane_ready_s = time.monotonic() - started
                metrics = plane.metrics()
                count = metrics.get("ambit_translation_seconds_count", 0.0)
                result.initial_translation_s = (
                    metrics.get("ambit_translation_seconds_sum", 0.0) / count if count else 0.0
                )
                result.memory["ready, no clients"] = plane.memory()
                with Children() as client_boxes:
                    clients = _start_clients(
                        client_boxes, ca=ca, plan=plan, grpc_port=grpc_port, result=result, progress=progress
                    )
                    time.sleep(plan.settle)
                    result.memory[f"{plan.clients} clients synced"] = plane.memory()
                    for k in range(plan.changes):
                        progress(f"change {k + 1}/{plan.changes}")
                        change = _change(
                            k,
                            plan=plan,
                            plane=plane,
                            store=store,
                            store_socket=store_socket,
                            clients=clients,
                            pods=pods,
                        )
                        result.changes.append(change)
                    result.memory[f"after {plan.changes} changes"] = plane.memory()
                    result.store_memory = Memory.of(store.proc.pid)
                    progress("stopping")
                result.plane_warnings, result.plane_errors = plane.log_counts()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result
