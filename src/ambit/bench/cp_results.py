"""What ``ambit bench controlplane`` runs and measures: the `Plan`, memory, each `Change`, the `Result`.

Plain records (``ambit.bench.controlplane`` fills them, ``ambit.bench.cp_report`` renders them);
`Memory.of` reads a process's memory from /proc.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass, field

from ambit.bench.cp_objects import Shape


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
