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

This module runs the steps; ``cp_results`` holds the plan and the figures, ``cp_plane`` the replica
process, ``cp_store``/``cp_client`` the other boxes, ``cp_objects`` the synthetic cluster and
``cp_report`` the output.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from ambit.bench.child import credential_json
from ambit.bench.cp_objects import Obj, Shape, is_ready, objects, with_readiness
from ambit.bench.cp_plane import Plane, cpu_seconds, free_port, plane_argv, run_queue_wait_seconds
from ambit.bench.cp_results import Change, ClientChange, Memory, Plan, Result
from ambit.bench.procs import Child, ChildError, Children, JsonObject
from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import issue
from ambit.model.identity import DEFAULT_TRUST_DOMAIN, NodeIdentity
from ambit.resources.names import CA_SUBDIR
from ambit.store.client import StoreClient
from ambit.store.types import Op

_WRITE_BATCH = 1000  # operations per store transaction while populating
_START_TIMEOUT = 120.0
_SYNC_TIMEOUT = 180.0


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
            credential = credential_json(issue(ca, NodeIdentity(DEFAULT_TRUST_DOMAIN, name)), bundle)
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
        ca = CertificateAuthority.create(DEFAULT_TRUST_DOMAIN)
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
            argv = plane_argv(root, store_socket, grpc_port, http_port)
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
