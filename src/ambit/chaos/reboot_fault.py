"""The node-reboot experiment: one node power-cycled (`ClusterHandle.reboot`,
:mod:`ambit.runtime.controllers.node_reboot`) while a packet capture runs on the fabric, and the two
properties a reboot must keep:

* **fail closed**: no enrolled pod's app started before its traffic capture was installed and the
  node's new ztunnel had ACKed the pod (from the kubelet's start record, :mod:`ambit.runtime.start_order`;
  the property Istio still breaks after reboots, istio#60882: an app started earlier could send
  plaintext past the mesh);
* **no plaintext on the wire**: no packet from the node's enrolled pods (their addresses before and
  after) or from the node itself on a port outside the runtime's :data:`FABRIC_PORTS`.

The experiment waits for its own recovery (every pod that was on the node ready again, the node's new
ztunnel ready and serving its enrolled pods, the probe workload's layout complete when it is deployed), so
``FaultEvents.end`` is observed. It returns the two counts as measures (each must be 0; the caller
asserts), with the kill, the ztunnel ready and each pod ready as marks.

The reboot SIGKILLs every process in the node's pods' namespaces, so a probe client running in the
node's load pod (the chaos engine's, started with ``ClusterHandle.popen``) dies at the kill; its netns
comes back under the same name (same pod uid) and address, so a new probe can be started there once
the load pod is ready again.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Collection, Iterable
from pathlib import Path

from ambit.chaos import workload
from ambit.chaos.experiments import READY_PORT, FaultPlan, now, probe_ready, wait_until
from ambit.reliability.flows import FaultEvents
from ambit.resources.objects import is_ready, name_of, namespace_of, node_name
from ambit.runtime import admin_client, netplan, pcap, start_order
from ambit.runtime.handle import ClusterHandle
from ambit.runtime.layout import FABRIC_PORTS, node_index

log = logging.getLogger(__name__)

EARLY_APPS = "apps started before capture+ACK"
PLAINTEXT = "plaintext packets from the node on the fabric"


def plaintext_packets(packets: Iterable[pcap.Packet], sources: Collection[str]) -> int:
    """Packets sent from one of ``sources`` to or from a port outside :data:`FABRIC_PORTS` (the lower
    port of the two is the service's; the other is the client's ephemeral one)."""
    return sum(1 for p in packets if p.src in sources and p.service_port not in FABRIC_PORTS)


def ztunnel_ready(handle: ClusterHandle, node: str, old_pid: int | None) -> bool:
    """A new ztunnel (not ``old_pid``) runs on ``node`` and answers ready."""
    pid = handle.ztunnel_pid(node)
    if pid is None or pid == old_pid:
        return False
    status, _ = admin_client.http_get(handle.node_netns(node), "/healthz/ready", port=READY_PORT, timeout=1.0)
    return status == 200


def node_reboot(handle: ClusterHandle, plan: FaultPlan) -> FaultEvents:
    """Reboot ``plan.target_node`` (its pods' order from ``plan.seed``) under a fabric capture; ends when
    every pod that was on it is ready again and its new ztunnel serves the enrolled ones."""
    node = plan.target_node
    before = handle.status().pods
    terminating = {
        f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        for p in handle.pods(None)
        if p["metadata"].get("deletionTimestamp")
    }
    # A pod being deleted does not come back after the reboot: do not wait for it.
    on_node = [p for p in before if p.node == node and f"{p.namespace}/{p.name}" not in terminating]
    ip_before = {f"{p.namespace}/{p.name}": p.ip for p in on_node}
    pods = set(ip_before)
    enrolled = {f"{p.namespace}/{p.name}" for p in on_node if p.ambient}
    sources = {p.ip for p in on_node if p.ambient and p.ip != "-"} | {netplan.underlay_ip(node_index(node))}
    probe_deployed = any(p.namespace == workload.NAMESPACE for p in before)
    old_ztunnel = handle.ztunnel_pid(node)
    ready_at: dict[str, float] = {}
    ztunnel_at: list[float] = []

    def back() -> bool:
        t = now()
        if not ztunnel_at and ztunnel_ready(handle, node, old_ztunnel):
            ztunnel_at.append(t)
        objects = handle.pods(None)
        for pod in objects:
            key = f"{namespace_of(pod)}/{name_of(pod)}"
            if key in pods and key not in ready_at and node_name(pod) == node and is_ready(pod):
                ready_at[key] = t
        if not ztunnel_at or not pods <= set(ready_at):
            return False
        serving = handle.serving(node)
        uids = {f"{namespace_of(p)}/{name_of(p)}": str(p["metadata"]["uid"]) for p in objects}
        if not all(serving.get(uids.get(key, "")) == "serving" for key in enrolled):
            return False
        return not probe_deployed or probe_ready(handle)

    with tempfile.TemporaryDirectory(prefix="ambit-reboot-") as tmp:
        path = Path(tmp) / "fabric.pcap"
        capture = pcap.start(handle.name, path)
        try:
            reply = handle.reboot(node, seed=plan.seed)
            end = wait_until(
                back, f"{node}'s pods ready again, served by its new ztunnel", plan.recovery_timeout, 0.2
            )
        finally:
            pcap.stop(capture)
        summary = pcap.summarise(path)
    records = handle.pod_start_order(node, reply.boot)
    sources |= {r.ip for r in records if r.enrolled}
    early = start_order.violations(records, enrolled)
    for why in early:
        log.warning("node-reboot of %s: %s", node, why)
    from_node = [p for p in summary.packets if p.src in sources]
    marks = [("kill", reply.boot)]
    marks += [("ztunnel ready", ztunnel_at[0])] if ztunnel_at else []
    marks += sorted(((f"{pod} ready", t) for pod, t in ready_at.items()), key=lambda m: m[1])
    measures: list[tuple[str, float]] = [
        (EARLY_APPS, float(len(early))),
        (PLAINTEXT, float(plaintext_packets(summary.packets, sources))),
        ("fabric packets from the node", float(len(from_node))),
        ("pods rebooted", float(len(records))),
        ("pod addresses changed", float(sum(1 for r in records if r.ip != ip_before.get(r.pod)))),
    ]
    return FaultEvents(
        "node-reboot",
        node,
        node,
        reply.boot,
        end,
        marks=tuple(marks),
        measures=tuple(measures),
    )
