"""``ambit bench hbone``: one HBONE hop measured side by side with a plain TCP and a plain TLS relay.

Topology of every configuration, each box its own OS process::

    load client -> [proxy A: plain TCP in] -> (the hop) -> [proxy B] -> target (echo | sink)

``direct`` skips both proxies (the baseline). All proxies, the target and the load client are
started once; a discarded warm-up pass exercises every configuration, then the configurations are
measured in turn, every repetition in the opposite order of the previous one, so slow drifts of a
noisy machine hit every configuration alike. Each measurement is one request/response run (its
own warm-up first, which also opens the HBONE pool's connection) then one bulk transfer. This
module owns the plan and the numbers; the processes live in ``target``, ``proxies`` and ``load``,
the rendering in ``report``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from ambit.bench.child import credential_json
from ambit.bench.procs import Child, Children, JsonObject
from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import issue
from ambit.model.identity import DEFAULT_TRUST_DOMAIN, Identity

KiB = 1024
MiB = 1024 * KiB
CLIENT_ID = Identity(DEFAULT_TRUST_DOMAIN, "bench", "proxy-a")
SERVER_ID = Identity(DEFAULT_TRUST_DOMAIN, "bench", "proxy-b")
_START_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Configuration:
    name: str
    hop: str  # direct | tcp | tls | hbone
    frame: int | None = None  # HboneSettings.send_frame_size on both sides; None = ambit's default


CONFIGURATIONS = (
    Configuration("direct", "direct"),
    Configuration("tcp-relay", "tcp"),
    Configuration("tls-relay", "tls"),
    Configuration("hbone", "hbone"),
    Configuration("hbone frame=16K", "hbone", 16 * KiB),
    Configuration("hbone frame=64K", "hbone", 64 * KiB),
    Configuration("hbone frame=256K", "hbone", 256 * KiB),
)


@dataclass(frozen=True, slots=True)
class Budget:
    bulk_bytes: int
    rr_seconds: float
    warmup_seconds: float
    repetitions: int
    concurrency: int = 8
    message_size: int = 1 * KiB

    warm_up: bool = True

    def warm_up_pass(self) -> Budget | None:
        """The budget of the discarded pass over every configuration before the measured ones.

        Freshly started processes ran measurably slower (first repetitions on this VM cost up to
        2× the CPU per request of later ones), so each configuration is exercised once first."""
        if not self.warm_up:
            return None
        return dataclasses.replace(
            self,
            bulk_bytes=min(self.bulk_bytes, 32 * MiB),
            rr_seconds=min(self.rr_seconds, 0.5),
            warmup_seconds=0.2,
            repetitions=1,
            warm_up=False,
        )

    @classmethod
    def full(cls) -> Budget:
        return cls(bulk_bytes=512 * MiB, rr_seconds=4.0, warmup_seconds=0.5, repetitions=3)

    @classmethod
    def quick(cls) -> Budget:
        return cls(bulk_bytes=64 * MiB, rr_seconds=1.0, warmup_seconds=0.2, repetitions=2)


ROLES = ("A", "B", "load", "target")


@dataclass(frozen=True, slots=True)
class BulkSample:
    bytes: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds per role during the window

    @property
    def gbit_per_s(self) -> float:
        return self.bytes * 8 / self.seconds / 1e9

    def cpu_percent(self, role: str) -> float:
        return 100 * self.cpu.get(role, 0.0) / self.seconds

    @property
    def proxy_cpu_s_per_gib(self) -> float:
        return (self.cpu.get("A", 0.0) + self.cpu.get("B", 0.0)) / (self.bytes / (1024 * MiB))


@dataclass(frozen=True, slots=True)
class RrSample:
    requests: int
    seconds: float
    p50_us: float
    p99_us: float
    cpu: dict[str, float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def cpu_percent(self, role: str) -> float:
        return 100 * self.cpu.get(role, 0.0) / self.seconds

    @property
    def proxy_cpu_us_per_request(self) -> float:
        if not self.requests:
            return 0.0
        return (self.cpu.get("A", 0.0) + self.cpu.get("B", 0.0)) / self.requests * 1e6


@dataclass(slots=True)
class Result:
    """All repetitions of one configuration; `bulk` / `rr` pick the best (see `report`)."""

    configuration: Configuration
    bulk_samples: list[BulkSample] = field(default_factory=list)
    rr_samples: list[RrSample] = field(default_factory=list)

    @property
    def bulk(self) -> BulkSample:
        return max(self.bulk_samples, key=lambda s: s.gbit_per_s)

    @property
    def rr(self) -> RrSample:
        return max(self.rr_samples, key=lambda s: s.per_second)


@dataclass(slots=True)
class _Boxes:
    """The running processes of one configuration (no proxies for direct)."""

    ports: dict[str, int]  # "echo" / "sink" -> the port the load client dials
    a: Child | None = None
    b: Child | None = None


def _start_all(
    children: Children, configurations: tuple[Configuration, ...]
) -> tuple[Child, Child, dict[str, _Boxes]]:
    ca = CertificateAuthority.create(DEFAULT_TRUST_DOMAIN)
    a_cred = credential_json(issue(ca, CLIENT_ID), ca.trust_bundle)
    b_cred = credential_json(issue(ca, SERVER_ID), ca.trust_bundle)
    target = children.start("target", "ambit.bench.target", {})
    load = children.start("load", "ambit.bench.load", {})
    t_ports = target.receive(_START_TIMEOUT)
    targets = [int(t_ports["echo"]), int(t_ports["sink"])]
    proxied = [c for c in configurations if c.hop != "direct"]
    bs = {
        c.name: children.start(
            f"{c.name} B",
            "ambit.bench.proxies",
            {
                "name": f"{c.name} B",
                "side": "b",
                "kind": c.hop,
                "targets": targets,
                "credential": b_cred,
                "frame": c.frame,
            },
        )
        for c in proxied
    }
    b_ports = {name: list(b.receive(_START_TIMEOUT)["ports"]) for name, b in bs.items()}
    a_config = {"side": "a", "targets": targets, "credential": a_cred, "peer": str(SERVER_ID)}
    as_ = {
        c.name: children.start(
            f"{c.name} A",
            "ambit.bench.proxies",
            {**a_config, "name": f"{c.name} A", "kind": c.hop, "b_ports": b_ports[c.name], "frame": c.frame},
        )
        for c in proxied
    }
    boxes = {"direct": _Boxes({"echo": targets[0], "sink": targets[1]})}
    for c in proxied:
        a_ports = as_[c.name].receive(_START_TIMEOUT)["ports"]
        boxes[c.name] = _Boxes({"echo": int(a_ports[0]), "sink": int(a_ports[1])}, as_[c.name], bs[c.name])
    load.receive(_START_TIMEOUT)
    return load, target, boxes


def _measure(
    load: Child, procs: dict[str, Child], command: JsonObject, timeout: float
) -> tuple[JsonObject, dict[str, float]]:
    """Run one load command; CPU seconds of every process between its start and end events."""
    load.send(command)
    load.receive(timeout)  # start
    before = {role: p.cpu_seconds() for role, p in procs.items()}
    load.receive(timeout)  # end
    cpu = {role: p.cpu_seconds() - before[role] for role, p in procs.items()}
    result: JsonObject = load.receive(timeout)["result"]
    return result, cpu


def _measure_once(load: Child, target: Child, box: _Boxes, budget: Budget) -> tuple[RrSample, BulkSample]:
    """One request/response run, then one bulk transfer, through one configuration's boxes."""
    procs = {"load": load, "target": target}
    if box.a is not None and box.b is not None:
        procs |= {"A": box.a, "B": box.b}
    rr_command = {
        "op": "rr",
        "port": box.ports["echo"],
        "conns": budget.concurrency,
        "size": budget.message_size,
        "warmup": budget.warmup_seconds,
        "seconds": budget.rr_seconds,
    }
    rr, cpu = _measure(load, procs, rr_command, budget.warmup_seconds + budget.rr_seconds + 60)
    rr_sample = RrSample(
        int(rr["requests"]), float(rr["seconds"]), float(rr["p50_us"]), float(rr["p99_us"]), cpu
    )
    bulk_command = {"op": "bulk", "port": box.ports["sink"], "bytes": budget.bulk_bytes}
    bulk, cpu = _measure(load, procs, bulk_command, budget.bulk_bytes / (20 * MiB) + 60)
    return rr_sample, BulkSample(int(bulk["bytes"]), float(bulk["seconds"]), cpu)


def run(
    budget: Budget,
    progress: Callable[[str], None] = lambda _m: None,
    configurations: tuple[Configuration, ...] = CONFIGURATIONS,
) -> list[Result]:
    """Measure every configuration `budget.repetitions` times; see the module docstring."""
    results = {c.name: Result(c) for c in configurations}
    with Children() as children:
        progress("starting processes")
        load, target, boxes = _start_all(children, configurations)
        warm = budget.warm_up_pass()
        if warm is not None:
            for c in configurations:
                progress(f"warm-up pass (not reported): {c.name}")
                _measure_once(load, target, boxes[c.name], warm)
        for rep in range(budget.repetitions):
            for c in configurations if rep % 2 == 0 else tuple(reversed(configurations)):
                progress(f"repetition {rep + 1}/{budget.repetitions}: {c.name}")
                rr, bulk = _measure_once(load, target, boxes[c.name], budget)
                results[c.name].rr_samples.append(rr)
                results[c.name].bulk_samples.append(bulk)
    return list(results.values())
