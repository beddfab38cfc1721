"""The ambit L7 row of ``ambit bench mesh``: the client pod's requests through a waypoint on node 2.

Path: client pod → (captured) node 1's ztunnel → HBONE → the waypoint replica on node 2 (it terminates the
tunnel, parses HTTP/1.1, routes, keeps telemetry and its access log) → HBONE → node 2's ztunnel → the
server pod. The client addresses the Service's cluster IP: a waypoint binds to service-addressed traffic.

Set-up, in order: the namespace ambient (as `AmbitL4`); a waypoint Gateway with one replica (``ambit
waypoint apply --replicas 1``, the ``ambit.dev/replicas`` annotation); the Service labelled
``istio.io/use-waypoint``; then wait until both ztunnels hold the binding and a probe request is counted
by the waypoint.

**Placement.** Nothing in a waypoint Gateway chooses the node: the controller's Deployment
(``control/waypoints.py``) has no nodeSelector and does not read ``spec.infrastructure.parametersRef``,
and it repairs a Deployment edited by hand. The runtime's scheduler (``runtime/scheduler.py::place``),
with nothing else to tell the nodes apart, picks the node with the fewest pods, then the lowest name —
node 1 here, a path that would skip a node hop. So an idle placeholder pod (``istio.io/dataplane-mode:
none``, ``nodeName: node1``) runs on node 1 while the replica is scheduled and is removed once it is
bound; the replica's node is then checked, and a replica anywhere but the server's node fails the row
(`BenchError`) rather than measuring another path.

**Proof.** `counted_requests` reads the waypoint's ``istio_requests_total`` (``reporter="waypoint"``,
from the client workload to Service ``server``, status 200) on its metrics port 15020; the bench fails
the row unless the waypoint counted at least the requests the client completed. Cost: both ztunnels and
the waypoint process, each its own cost row (the waypoint's target is about it alone).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ambit.bench.mesh_cluster import NAMESPACE, SERVICE, BenchCluster, BenchError
from ambit.bench.mesh_configs import Configuration, wait_for
from ambit.resources.objects import GATEWAY_NAME_LABEL, USE_WAYPOINT, is_ready
from ambit.runtime.admin_client import AdminError

WAYPOINT = "waypoint"
WAYPOINT_CONTAINER = "istio-proxy"  # the container the waypoint controller's Deployment runs
METRICS_PORT = 15020
PLACEHOLDER = "placeholder"
PLACEHOLDER_MANIFEST = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {PLACEHOLDER}
  namespace: {NAMESPACE}
  labels: {{app: {PLACEHOLDER}, istio.io/dataplane-mode: none}}
spec:
  nodeName: node1
  containers:
  - name: idle
    image: busybox
    command: [sleep, infinity]
"""


def parse_requests_total(text: str, **labels: str) -> int:
    """The sum of the ``istio_requests_total`` series (Prometheus text format) carrying every ``labels``."""
    total = 0.0
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        if not line.startswith("istio_requests_total{"):
            continue
        series, _, value = line.rpartition(" ")
        if all(w in series for w in wanted):
            total += float(value)
    return int(total)


@dataclass
class AmbitL7(Configuration):
    """ambit with one waypoint replica on node 2; see the module docstring."""

    _pod: str = ""  # the waypoint replica's pod
    _netns: str = ""  # its network namespace
    _node: str = ""

    key = "ambit-l7"
    name = "ambit L7 (waypoint)"
    description = (
        "namespace ambient and Service server labelled istio.io/use-waypoint (one waypoint replica, placed "
        "on node 2): captured in the client pod, node 1's ztunnel → HBONE → the waypoint (HTTP/1.1 parsed, "
        "routed, counted and access-logged) → HBONE → node 2's ztunnel → the server pod; addressed to the "
        "Service's cluster IP"
    )
    l7 = True

    def setup(self, cluster: BenchCluster) -> None:
        cluster.set_ambient(True)
        handle = cluster.handle
        handle.apply(PLACEHOLDER_MANIFEST)
        wait_for(
            "the placeholder pod on node 1 running",
            lambda: any(p["metadata"]["name"] == PLACEHOLDER and is_ready(p) for p in handle.pods(NAMESPACE)),
            30,
        )
        cluster.ambit(
            "waypoint", "apply", "-n", NAMESPACE, "--name", WAYPOINT, "--replicas", "1",
            "--wait", "--timeout", "60",
        )  # fmt: skip
        wait_for("one waypoint replica ready", lambda: self._find_replica(cluster), 60)
        handle.delete("Pod", PLACEHOLDER, NAMESPACE)
        server_node = str(handle.pod("server", NAMESPACE)["spec"]["nodeName"])
        if self._node != server_node:
            raise BenchError(
                f"the waypoint replica {self._pod} landed on {self._node}, not on the server's node "
                f"({server_node}): the row would measure another path"
            )
        handle.label("Service", SERVICE, {USE_WAYPOINT: WAYPOINT}, NAMESPACE)
        wait_for("both ztunnels hold the Service's waypoint", lambda: self._bound(cluster), 30)
        wait_for("a probe request counted by the waypoint", lambda: self.probe(cluster), 30)

    def _find_replica(self, cluster: BenchCluster) -> bool:
        replicas = [
            p
            for p in cluster.handle.pods(NAMESPACE)
            if (p["metadata"].get("labels") or {}).get(GATEWAY_NAME_LABEL) == WAYPOINT
        ]
        if len(replicas) != 1 or not is_ready(replicas[0]):
            return False
        pod: dict[str, Any] = replicas[0]
        self._pod, self._node = pod["metadata"]["name"], str(pod["spec"]["nodeName"])
        self._netns = cluster.handle.pod_net(self._pod, NAMESPACE).netns
        return True

    def _bound(self, cluster: BenchCluster) -> bool:
        key = f"{NAMESPACE}/{SERVICE}.{NAMESPACE}.svc.cluster.local"
        for node in cluster.handle.nodes():
            try:
                service = (cluster.handle.ztunnel_config(node).get("services") or {}).get(key) or {}
            except AdminError:
                return False
            if not service.get("waypoint"):
                return False
        return True

    def counted_requests(self, cluster: BenchCluster) -> int:
        url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
        text = cluster.run_in(self._netns, ["curl", "-sf", "-m", "5", url], timeout=10)
        return parse_requests_total(
            text,
            reporter="waypoint",
            source_workload="client",
            destination_service_name=SERVICE,
            response_code="200",
        )

    def on_path(self) -> str:
        return f"waypoint {self._pod} on {self._node} (istio_requests_total)"

    def proxies(self, cluster: BenchCluster) -> dict[str, int]:
        pid = cluster.handle.pid(f"pod-{NAMESPACE}-{self._pod}-{WAYPOINT_CONTAINER}")
        if pid is None:
            raise BenchError(f"no pid recorded for the waypoint replica {self._pod}")
        return {**cluster.ztunnel_pids(), "waypoint": pid}

    def teardown(self, cluster: BenchCluster) -> None:
        handle = cluster.handle
        pid = handle.pid(f"pod-{NAMESPACE}-{self._pod}-{WAYPOINT_CONTAINER}") if self._pod else None
        handle.label("Service", SERVICE, {USE_WAYPOINT: None}, NAMESPACE)
        handle.delete("Gateway", WAYPOINT, NAMESPACE)  # its Deployment and pod go with it (owner cascade)
        handle.delete("Pod", PLACEHOLDER, NAMESPACE)

        def gone() -> bool:
            return not any(
                p["metadata"]["name"] == PLACEHOLDER
                or (p["metadata"].get("labels") or {}).get(GATEWAY_NAME_LABEL) == WAYPOINT
                for p in handle.pods(NAMESPACE)
            )

        wait_for("the waypoint and placeholder pods gone", gone, 60)
        if pid is not None:
            wait_for(f"the waypoint process {pid} gone", lambda: not os.path.exists(f"/proc/{pid}"), 30)
        cluster.set_ambient(False)
