"""The chaos engine: one experiment run on a running cluster, from the probe workload to the verdict.

A run: make sure the probe workload is deployed and ready (:mod:`ambit.chaos.workload`), read the
topology back from the cluster, start one probe client (``ambit app probe``) in every node's load pod
(its traffic is captured like any pod's), wait until all of them send, let the load run for a warm-up,
inject the fault (:mod:`ambit.chaos.experiments`; it waits for its own recovery), keep the load running
for a tail, stop the probes, then compute the prediction from the topology and the observed fault
timeline (:func:`ambit.reliability.predict.predict`) and judge every recorded request against it
(:func:`ambit.reliability.verdict.judge`). The probe's records and stderr stay in the run's directory.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import select
import signal
import subprocess
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ambit.apps.load.probe import read_probe_lines
from ambit.chaos import catalog, experiments, workload
from ambit.chaos.run import ChaosRun, LoadParameters
from ambit.reliability.flows import ConnKind, Observation, Timing
from ambit.reliability.predict import predict
from ambit.reliability.verdict import judge
from ambit.runtime.ambit_command import ambit_argv
from ambit.runtime.deployment_revisions import RolloutError
from ambit.runtime.handle import ClusterHandle
from ambit.runtime.layout import read_json
from ambit.runtime.rollout import rolled_out

PROBE_START_TIMEOUT = 60.0


class ChaosError(RuntimeError):
    """A run could not be carried out (not a FAIL verdict: the experiment did not take place)."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    """One experiment's knobs (the CLI's flags)."""

    experiment: str
    target: str | None = None  # a node (or, for the waypoint experiments, a node hosting a replica)
    rate: float = 10.0  # requests per second per flow and connection kind
    timeout: float = 3.0  # per request
    duration: float = 20.0  # how long a held fault lasts (partition, outages)
    warmup: float = 3.0  # load before the fault
    tail: float = 8.0  # load after the fault is over
    restarts: int = 10  # ztunnel-restart
    max_age: float = 20.0  # the probe's kept-alive connections are retired at this age
    memory_settle: float = (
        0.0  # node-partition: each ztunnel's PSS this long after the heal (0: not measured)
    )
    seed: int = 0


def wait_probe_layout(handle: ClusterHandle, within: float = 180.0) -> workload.ProbeLayout:
    deadline = time.monotonic() + within
    while True:
        try:
            return workload.probe_layout(handle.nodes(), handle.objects(["Pod", "Service"]))
        except workload.LayoutError as exc:
            if time.monotonic() > deadline:
                raise ChaosError(f"the probe workload is not ready after {within:.0f} s: {exc}") from exc
        time.sleep(0.5)


def ensure_workload(handle: ClusterHandle, *, waypoint: bool) -> workload.ProbeLayout:
    """Deploy (or update) the probe workload and wait until it is ready and meshed."""
    handle.apply(workload.manifests(handle.nodes(), waypoint=waypoint))
    # Re-applying a template an earlier run changed (app-rollout's restartedAt) rolls the Deployment
    # again: wait for every rollout to finish and every old pod to be gone before reading the layout.
    deadline = time.monotonic() + 120
    while not workload_settled(handle):
        if time.monotonic() > deadline:
            raise ChaosError("the probe workload's Deployments did not finish rolling out in 120 s")
        time.sleep(0.5)
    layout = wait_probe_layout(handle)
    deadline = time.monotonic() + 60
    while not all(
        on is True
        for name, on in handle.meshed(workload.NAMESPACE).items()
        if name.startswith(("echo-", "load-"))  # waypoints are not captured: they are the mesh
    ):
        if time.monotonic() > deadline:
            raise ChaosError("the probe pods are not all captured and served by their ztunnel after 60 s")
        time.sleep(0.5)
    if waypoint and not any(d.waypoint for d in layout.topology.destinations):
        raise ChaosError("the probe's waypointed Service is not bound to its waypoint")
    return wait_probe_layout(handle)


def settle(handle: ClusterHandle, layout: workload.ProbeLayout, within: float = 90.0) -> None:
    """Until every load pod gets an answer from every target, twice in a row: pods ready and captured
    is not yet a mesh that serves (a waypoint just deployed is known to the client ztunnels a push
    before the destinations admit it), and a failure before the fault would be a false FAIL."""
    urls = " ".join(t.url for t in layout.targets)
    script = f'ok=0; for u in {urls}; do curl -s -o /dev/null -m 2 -f "$u" && ok=$((ok+1)); done; echo $ok'
    deadline = time.monotonic() + within
    streak = 0
    while streak < 2:
        answered = [
            handle.exec(
                ["sh", "-c", script], pod=pod, namespace=workload.NAMESPACE, check=False
            ).stdout.strip()
            for pod in layout.load_pods.values()
        ]
        streak = streak + 1 if all(a == str(len(layout.targets)) for a in answered) else 0
        if streak < 2:
            if time.monotonic() > deadline:
                raise ChaosError(f"the probe's targets do not all answer after {within:.0f} s: {answered}")
            time.sleep(0.5)


def workload_settled(handle: ClusterHandle) -> bool:
    """Every Deployment of the probe rolled out, and no pod of the namespace terminating."""
    objects = [
        o
        for o in handle.objects(["Deployment", "Pod"])
        if (o.get("metadata") or {}).get("namespace") == workload.NAMESPACE
    ]
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    terminating = [o for o in objects if o["kind"] == "Pod" and o["metadata"].get("deletionTimestamp")]
    try:
        return bool(deployments) and all(rolled_out(d) for d in deployments) and not terminating
    except RolloutError:
        return False


def check_untouched(handle: ClusterHandle) -> None:
    """A run starts from a cluster no earlier fault left changed (a cut, a component held down, a
    cordoned node): its prediction assumes every node and component up. :class:`ChaosError` names it."""
    left = [f"node {n} cut off the fabric (ambit fault heal {n})" for n in sorted(handle.cuts())]
    left += [f"{key} held down (ambit start)" for key in sorted(handle.held())]
    left += [
        f"node {n['metadata']['name']} cordoned (ambit uncordon {n['metadata']['name']})"
        for n in handle.objects(["Node"])
        if (n.get("spec") or {}).get("unschedulable")
    ]
    if left:
        raise ChaosError("the cluster is not as a run needs it: " + "; ".join(left))


def cluster_timing(handle: ClusterHandle, options: RunOptions) -> Timing:
    config = read_json(handle.layout.config)
    return Timing(
        request_timeout=options.timeout,
        node_grace=float(config.get("node_grace", 8.0)),
        keepalive_max_age=options.max_age,
    )


def choose_target(layout: workload.ProbeLayout, options: RunOptions) -> str:
    """The fault's node: ``--target``, else one drawn by the seed from the nodes that host a ``spread``
    endpoint (so the node without one exercises the client ztunnel's retry)."""
    nodes = layout.topology.nodes
    if options.target is not None:
        if options.target not in nodes:
            raise ChaosError(f"no node {options.target!r} (nodes: {', '.join(nodes)})")
        return options.target
    gap = workload.spread_gap(nodes)
    return random.Random(options.seed).choice([n for n in nodes if n != gap] or list(nodes))


@dataclass
class Probe:
    node: str
    proc: subprocess.Popen[bytes]
    out: Path
    err: IO[bytes]


def start_probes(
    handle: ClusterHandle,
    layout: workload.ProbeLayout,
    options: RunOptions,
    directory: Path,
    *,
    nodes: Collection[str] | None = None,
    suffix: str = "",
    targets: Sequence[workload.ProbeTarget] | None = None,
    into: list[Probe] | None = None,
) -> list[Probe]:
    """One probe per node (or per node of ``nodes``), in its load pod, to ``targets`` (the layout's).
    Each is appended to ``into`` as soon as it runs, so a caller's ``finally`` stops it even when a later
    one fails to start. It ends by itself after :func:`probe_lifetime` should nothing stop it."""
    probes: list[Probe] = into if into is not None else []
    for node, pod in sorted(layout.load_pods.items()):
        if nodes is not None and node not in nodes:
            continue
        out = directory / f"probe-{node}{suffix}.jsonl"
        err = (directory / f"probe-{node}{suffix}.log").open("wb")
        argv = [*ambit_argv(), "app", "probe", "--source", node, "--out", str(out)]
        argv += ["--rate", f"{options.rate:g}", "--timeout", f"{options.timeout:g}"]
        argv += ["--duration", f"{probe_lifetime(options):.0f}"]
        argv += ["--max-age", f"{options.max_age:g}"]
        for target in targets if targets is not None else layout.targets:
            argv += ["--flow", f"{target.name}={target.url}"]
        proc = handle.popen(argv, pod=pod, namespace=workload.NAMESPACE, stdout=subprocess.PIPE, stderr=err)
        probes.append(Probe(node, proc, out, err))
    return probes


def probe_lifetime(options: RunOptions) -> float:
    """How long a probe may run at most: the run's longest plausible length, so that a probe nobody
    stopped (the engine killed) ends by itself instead of loading the machine for an hour."""
    restarts = options.restarts * 40.0 if options.experiment == "ztunnel-restart" else 0.0
    return options.warmup + options.duration + options.memory_settle + restarts + options.tail + 600.0


def wait_running(probes: Sequence[Probe], within: float = PROBE_START_TIMEOUT) -> None:
    """Until every probe printed ``probe running``."""
    deadline = time.monotonic() + within
    pending = {p.proc.stdout: p for p in probes if p.proc.stdout is not None}
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ChaosError(f"probes on {', '.join(p.node for p in pending.values())} did not start")
        ready, _, _ = select.select(list(pending), [], [], min(left, 1.0))
        for stream in ready:
            line = stream.readline()
            probe = pending[stream]
            if not line:
                raise ChaosError(f"the probe on {probe.node} exited (see {probe.out.with_suffix('.log')})")
            if line.startswith(b"probe running"):
                del pending[stream]


def restart_dead_probes(
    handle: ClusterHandle,
    layout: workload.ProbeLayout,
    options: RunOptions,
    directory: Path,
    probes: list[Probe],
    *,
    rebooted: str,
) -> None:
    """A node reboot SIGKILLs every process in its pods' namespaces, the probe's too: start a new one
    in the same load pod, writing a file of its own (both are read), appended to ``probes``. A probe that
    died in any other experiment, or on another node, is an error (its node's traffic went unmeasured)."""
    dead = {p.node for p in probes if p.proc.poll() is not None}
    if not dead:
        return
    if options.experiment != "node-reboot" or dead != {rebooted}:
        codes = ", ".join(f"{p.node} (exit {p.proc.returncode})" for p in probes if p.proc.poll() is not None)
        raise ChaosError(f"probes died during {options.experiment}: {codes}; see probe-<node>.log")
    current = wait_probe_layout(handle)
    before = len(probes)
    start_probes(
        handle,
        current,
        options,
        directory,
        nodes=dead,
        suffix=f"-{sum(1 for p in probes if p.node in dead) + 1}",
        targets=layout.targets,
        into=probes,
    )
    wait_running(probes[before:])


def stop_probes(probes: Sequence[Probe]) -> None:
    """SIGTERM every probe (they write what they have and exit), SIGKILL one that does not within 15 s;
    each on its own, so one that misbehaves never leaves the others running."""
    for probe in probes:
        with contextlib.suppress(OSError):
            if probe.proc.poll() is None:
                probe.proc.send_signal(signal.SIGTERM)
    for probe in probes:
        try:
            probe.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                probe.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                probe.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            if probe.proc.stdout is not None:
                probe.proc.stdout.close()
        probe.err.close()


def observations(probes: Sequence[Probe]) -> list[Observation]:
    found: list[Observation] = []
    for probe in probes:
        for line in read_probe_lines(probe.out.read_text() if probe.out.exists() else ""):
            kind: ConnKind = "new" if line.get("kind") == "new" else "keepalive"
            outcome = str(line.get("outcome", ""))
            found.append(
                Observation(
                    source=str(line.get("source") or probe.node),
                    destination=str(line["destination"]),
                    kind=kind,
                    start=float(line["start"]),
                    end=float(line["end"]),
                    ok=outcome == "ok",
                    outcome=outcome,
                    error=str(line.get("detail") or ""),
                    served_node=str(line.get("served_node") or ""),
                )
            )
    return found


def _commit() -> str:
    """The commit of the checkout this code runs from (read from ``.git``, no git binary), or ""."""
    for root in Path(__file__).resolve().parents:
        git = root / ".git"
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = Path(git.read_text().split(":", 1)[1].strip())
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref: "):
                return head[:7]
            ref = head.removeprefix("ref: ")
            common = Path((git / "commondir").read_text().strip()) if (git / "commondir").exists() else git
            common = common if common.is_absolute() else git / common
            for base in (git, common):
                if (base / ref).is_file():
                    return (base / ref).read_text().strip()[:7]
            for line in (common / "packed-refs").read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0][:7]
        except OSError:
            return ""
        return ""
    return ""


def context(handle: ClusterHandle, options: RunOptions, target: str) -> dict[str, Any]:
    return {
        "cluster": handle.name,
        "nodes": len(handle.nodes()),
        "seed": options.seed,
        "target": target,
        "commit": _commit(),
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "options": {
            "rate": options.rate,
            "timeout": options.timeout,
            "duration": options.duration,
            "warmup": options.warmup,
            "tail": options.tail,
            "restarts": options.restarts,
            "max_age": options.max_age,
            "memory_settle": options.memory_settle,
        },
    }


def run_experiment(handle: ClusterHandle, options: RunOptions, directory: Path, index: int = 1) -> ChaosRun:
    """One run of ``options.experiment``; its probe records go to ``directory``."""
    inject = catalog.EXPERIMENTS.get(options.experiment)
    if inject is None:
        raise ChaosError(
            f"unknown experiment {options.experiment!r} (one of {', '.join(sorted(catalog.EXPERIMENTS))})"
        )
    directory.mkdir(parents=True, exist_ok=True)
    check_untouched(handle)
    layout = ensure_workload(handle, waypoint=options.experiment in catalog.NEEDS_WAYPOINT)
    settle(handle, layout)
    target = choose_target(layout, options)
    timing = cluster_timing(handle, options)
    plan = experiments.FaultPlan(
        target, options.duration, options.restarts, options.seed, memory_settle=options.memory_settle
    )
    probes: list[Probe] = []
    try:
        start_probes(handle, layout, options, directory, into=probes)
        wait_running(probes)
        origin = time.monotonic()
        time.sleep(options.warmup)
        events = inject(handle, plan)
        restart_dead_probes(handle, layout, options, directory, probes, rebooted=events.target_node)
        time.sleep(options.tail)
    finally:
        stop_probes(probes)
    seen = observations(probes)
    origin = min((o.start for o in seen), default=origin)
    prediction = predict(layout.topology, events, timing)
    verdict = judge(prediction, layout.topology, seen)
    return ChaosRun(
        experiment=options.experiment,
        index=index,
        topology=layout.topology,
        timing=timing,
        load=LoadParameters(options.rate, options.timeout, time.monotonic() - origin, options.max_age),
        events=events,
        prediction=prediction,
        verdict=verdict,
        observations=tuple(seen),
        origin=origin,
        placement=layout.placement,
        context=context(handle, options, target),
    )
