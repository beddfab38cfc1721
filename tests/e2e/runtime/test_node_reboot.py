"""A node reboot on a real cluster (`ClusterHandle.reboot`, the node-reboot experiment): every process
of node2 SIGKILLed, its pods' network namespaces deleted, then node2 boots, its ztunnel and its pods
racing. It must come back fail closed: every pod of node2 ready again with its address, each enrolled
pod's app started only after its capture was installed and the new ztunnel ACKed it, and nothing from
node2's enrolled pods on the fabric outside FABRIC_PORTS.

One 2-node cluster with ztunnels. Ambient namespace ``talk``: ``server-1`` on node1, ``server-2`` and
``talker`` on node2 (``talker`` curls server-1 every 0.2 s from the moment it starts: an app started
before its capture would put plaintext on the wire at once). Namespace ``plain`` (not enrolled):
another talker on node2, whose plaintext the same capture must see (the control: the wire check can
fail). A `sleep` started in talker's namespace with `ClusterHandle.popen` (as the chaos engine starts
its probe) must die with the reboot.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ambit.chaos.experiments import FaultPlan
from ambit.chaos.reboot_fault import EARLY_APPS, PLAINTEXT, node_reboot, plaintext_packets
from ambit.runtime import pcap, start_order
from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import ambient_namespace, ambit, ready, temporary_cluster, wait_for

pytestmark = pytest.mark.root

TALK = "talk"
PLAIN = "plain"
ON_NODE2 = {f"{TALK}/server-2", f"{TALK}/talker", f"{PLAIN}/talker", "ambit-system/controlplane-2"}
ENROLLED = {f"{TALK}/server-2", f"{TALK}/talker"}


def server(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": TALK, "labels": {"app": name}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "ambit/sample", "ports": [{"containerPort": 8080}]}],
        },
    }


def talker(namespace: str, target: str) -> dict[str, Any]:
    loop = f"while :; do curl -s -o /dev/null -m 1 http://{target}:8080/; sleep 0.2; done"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "talker", "namespace": namespace},
        "spec": {
            "nodeName": "node2",
            "containers": [{"name": "talk", "image": "curl", "command": ["sh", "-c", loop]}],
        },
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    with temporary_cluster(cluster_name("r"), tmp_path_factory.mktemp("run")) as name:
        ambit(name, "up", "--nodes", "2")
        handle = ClusterHandle(name)
        handle.apply(ambient_namespace(TALK))
        handle.apply(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {PLAIN}\n")
        handle.apply([server("server-1", "node1"), server("server-2", "node2")])
        wait_for(lambda: all(ready(p) for p in handle.pods(TALK)) and len(handle.pods(TALK)) == 2, "servers")
        target = str(handle.pod("server-1", TALK)["status"]["podIP"])
        handle.apply([talker(TALK, target), talker(PLAIN, target)])
        wait_for(
            lambda: ready(handle.pod("talker", TALK)) and ready(handle.pod("talker", PLAIN)), "talkers", 60
        )
        wait_for(lambda: all(handle.meshed(TALK).values()), "talk captured and served", 60)
        yield name


def test_a_rebooted_node_comes_back_fail_closed(cluster: str, tmp_path: Path) -> None:
    handle = ClusterHandle(cluster)
    ips = {
        f"{ns}/{p['metadata']['name']}": p["status"]["podIP"] for ns in (TALK, PLAIN) for p in handle.pods(ns)
    }
    old_ztunnel = handle.ztunnel_pid("node2")
    sleeper = handle.popen(["sleep", "300"], pod="talker", namespace=TALK)
    own = pcap.start(cluster, tmp_path / "fabric.pcap")
    try:
        events = node_reboot(handle, FaultPlan("node2", 0.0, seed=1, recovery_timeout=90))
        time.sleep(2.0)  # the talker talks through the new ztunnel a while
    finally:
        pcap.stop(own)
        if sleeper.poll() is None:
            sleeper.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            sleeper.wait(timeout=10)
    measures = dict(events.measures)
    marks = dict(events.marks)
    print(f"\nreboot of node2: {events.end - events.start:.1f}s to ready; {measures}; {marks}")

    # Every pod of node2 ready again, each with its address; the new ztunnel serves.
    assert measures["pods rebooted"] == len(ON_NODE2)
    assert measures["pod addresses changed"] == 0
    assert {
        m.removesuffix(" ready") for m in marks if m.endswith(" ready") and m != "ztunnel ready"
    } == ON_NODE2
    assert all(t >= events.start for t in marks.values())
    assert handle.ztunnel_pid("node2") not in (None, old_ztunnel)
    assert sleeper.returncode == -signal.SIGKILL  # a process the kubelet did not start dies with the node

    # Fail closed: each enrolled pod's app after its capture and its ztunnel's ACK (the record says when).
    assert measures[EARLY_APPS] == 0
    records = handle.pod_start_order("node2")
    assert {r.pod for r in records} == ON_NODE2
    assert all(r.boot == events.start for r in records)
    assert start_order.violations(records, ENROLLED) == []
    for record in records:
        if record.pod in ENROLLED:
            assert record.capture is not None and record.ack is not None
            assert events.start < record.capture <= record.ack <= record.app
    assert sorted(r.rank for r in records if r.rank is not None) == list(range(len(ON_NODE2)))

    # Nothing from node2's enrolled pods in plaintext; the talker did talk, over HBONE; the plain talker's
    # plaintext is seen by the same capture (the check can fail).
    assert measures[PLAINTEXT] == 0
    packets = pcap.summarise(tmp_path / "fabric.pcap").packets
    talker_ip, plain_ip = ips[f"{TALK}/talker"], ips[f"{PLAIN}/talker"]
    assert plaintext_packets(packets, {talker_ip, ips[f"{TALK}/server-2"]}) == 0
    assert any(p.src == talker_ip and p.service_port == 15008 for p in packets)
    assert plaintext_packets(packets, {plain_ip}) > 0
