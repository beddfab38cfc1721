"""`ambit up` / `ambit down` orchestration (blocking; the CLI calls these).

:func:`prepare` makes the cluster's files (config, CA, node credentials) and its network, then
:func:`start_daemon` detaches ``ambit --cluster C runtime-daemon`` (own session, pid recorded).
The config (``cluster.json``) also records the control plane's workload-certificate options
(``workload_cert_ttl``, ``outage_tolerance``: seconds or null) and ``test_fault_endpoints``; the daemon
passes them to every control-plane replica (``ambit.runtime.bootstrap``).
:func:`down` works without the daemon: it stops the daemon and every recorded process (by pid, only
while ``/proc/<pid>/cmdline`` still matches), any process left inside the cluster's own namespaces,
then deletes the namespaces (state file + name sweep) and the cluster directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import timedelta

from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import issue
from ambit.identity.tokens import create_token_keys
from ambit.model.identity import DEFAULT_TRUST_DOMAIN, NodeIdentity
from ambit.proxy.control_plane import NodeCredentialFiles
from ambit.runtime import netplan, procs
from ambit.runtime.ambit_command import ambit_argv
from ambit.runtime.fabric_pki import FabricPki
from ambit.runtime.layout import Layout, node_name, write_json
from ambit.runtime.netns import NetRuntime, list_netns, netns_pids


class ClusterError(RuntimeError):
    pass


@dataclass
class UpOptions:
    nodes: int = 3
    zones: list[str] = field(default_factory=list)
    ztunnel: bool = True
    controlplane_replicas: int = 2
    node_grace: float = 8.0  # seconds without a heartbeat before a node is NotReady (Kubernetes: 50 s)
    workload_cert_ttl: float | None = None  # seconds; None: the CA's default (as the caller asks, 24 h)
    outage_tolerance: float | None = None  # seconds; certificates live at least twice this
    test_fault_endpoints: bool = False  # chaos tests only: the replicas serve POST /debug/fault/ca


def check_certificate_options(options: UpOptions) -> None:
    """ClusterError when the workload-certificate options contradict each other (the control plane's
    own rule, :meth:`ambit.control.ca_server.WorkloadCertPolicy.resolve`), before anything is made."""
    # Imported here: the CA service loads grpc, which `ambit down` and `status` have no use for.
    from ambit.control.ca_server import WorkloadCertPolicy

    def seconds(value: float | None) -> timedelta | None:
        return None if value is None else timedelta(seconds=value)

    try:
        WorkloadCertPolicy.resolve(seconds(options.workload_cert_ttl), seconds(options.outage_tolerance))
    except ValueError as exc:
        raise ClusterError(str(exc)) from None


def exists(cluster: str) -> bool:
    layout = Layout(cluster)
    return layout.root.exists() or NetRuntime(cluster, layout.state_dir).exists()


def prepare(cluster: str, options: UpOptions) -> Layout:
    netplan.validate_cluster_name(cluster)
    if options.nodes < 1:
        raise ClusterError("a cluster needs at least one node")
    check_certificate_options(options)
    layout = Layout(cluster)
    if exists(cluster):
        raise ClusterError(f"cluster {cluster} already exists (ambit --cluster {cluster} down)")
    layout.root.mkdir(parents=True, exist_ok=False)
    os.chmod(layout.root, 0o700)
    for d in (layout.state_dir, layout.pids_dir, layout.logs_dir):
        d.mkdir(parents=True, exist_ok=True)
    write_json(
        layout.config,
        {
            "cluster": cluster,
            "nodes": options.nodes,
            "zones": options.zones,
            "ztunnel": options.ztunnel,
            "controlplane_replicas": options.controlplane_replicas,
            "node_grace": options.node_grace,
            "workload_cert_ttl": options.workload_cert_ttl,
            "outage_tolerance": options.outage_tolerance,
            "test_fault_endpoints": options.test_fault_endpoints,
        },
    )
    ca = CertificateAuthority.create(DEFAULT_TRUST_DOMAIN)
    ca.save(layout.ca_dir)
    create_token_keys(layout.tokens_dir)
    bundle = ca.trust_bundle.roots_pem
    for i in range(1, options.nodes + 1):
        name = node_name(i)
        directory = layout.node_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        NodeCredentialFiles.in_dir(directory).write(
            issue(ca, NodeIdentity(DEFAULT_TRUST_DOMAIN, name)), bundle
        )
    FabricPki(layout.fabric_pki_dir).ensure(
        [node_name(i) for i in range(1, options.nodes + 1)], netplan.FABRIC_STORE_ADDRESS
    )
    net = NetRuntime(cluster, layout.state_dir)
    net.create_cluster(netplan.plan_cluster(netplan.ClusterLayout.simple(cluster, options.nodes)))
    return layout


def start_daemon(cluster: str) -> int:
    layout = Layout(cluster)
    argv = [*ambit_argv(), "--cluster", cluster, "runtime-daemon"]
    with open(layout.log("daemon"), "ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    procs.record(layout.daemon_pid, proc.pid, argv)
    # Until the child has exec'd, /proc/<pid>/cmdline is still ours: wait for it, so that
    # daemon_alive() never mistakes a starting daemon for a dead one.
    deadline = time.monotonic() + 10.0
    while proc.poll() is None and not procs.matches(proc.pid, argv) and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc.pid


def daemon_alive(cluster: str) -> bool:
    entry = procs.read(Layout(cluster).daemon_pid)
    if entry is None:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(entry[0], os.WNOHANG)
    return procs.matches(*entry)


@dataclass
class DownReport:
    stopped: list[int] = field(default_factory=list)
    deleted_netns: list[str] = field(default_factory=list)


def down(cluster: str, *, grace: float = 10.0) -> DownReport:
    netplan.validate_cluster_name(cluster)
    layout = Layout(cluster)
    report = DownReport()
    entry = procs.read(layout.daemon_pid)
    if entry is not None and procs.stop(*entry, grace=grace):  # SIGTERM: it stops its children itself
        report.stopped.append(entry[0])
    layout.daemon_pid.unlink(missing_ok=True)
    report.stopped += procs.stop_recorded(layout.pids_dir)
    # Anything still inside this cluster's own namespaces is this cluster's (e.g. an `ambit exec`).
    for name in list_netns():
        if netplan.owns_netns(cluster, name):
            for pid in netns_pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                report.stopped.append(pid)
    time.sleep(0.05)
    net = NetRuntime(cluster, layout.state_dir)
    report.deleted_netns = net.teardown().deleted
    if layout.root.exists():
        shutil.rmtree(layout.root)
    return report
