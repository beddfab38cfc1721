"""``ambit drain`` against a real store server, as ``kubectl drain`` behaves and prints.

No runtime runs: the tests write the Nodes, workloads, Pods and PodDisruptionBudgets themselves, and
:class:`Kubelet` plays the node's kubelet (once a pod is marked terminating, it deletes the pod with a
grace period of 0, as the kubelet does after stopping the containers). Store calls made while the
command runs (the kubelet, a replacement pod) run on the store's own loop, since ``CliRunner`` blocks
the test's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from cli_harness import ThreadedStore, ambit, ok

from ambit.cli.drain import EVICTION_RETRY_DELAY, aggregate, go_duration
from ambit.runtime.bootstrap import controlplane_objects
from ambit.runtime.layout import SYSTEM_NAMESPACE, Layout
from ambit.store.client import StoreClient
from ambit.store.types import NotFound, Obj

_T = TypeVar("_T")

BUDGET_REFUSAL = (
    "Cannot evict pod as it would violate the pod's disruption budget. "
    "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"
)
RETRY_LINE = f'error when evicting pods/"web-1" -n "default" (will retry after 5s): {BUDGET_REFUSAL}'


def on_store(server: ThreadedStore, work: Callable[[StoreClient], Awaitable[_T]], timeout: float = 15) -> _T:
    """Run `work` with a client on the store's loop (usable while a CLI call blocks this thread)."""

    async def run() -> _T:
        async with StoreClient(server.socket_path) as client:
            return await work(client)

    return asyncio.run_coroutine_threadsafe(run(), server.loop).result(timeout)


def node(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def pod(
    name: str,
    on: str,
    *,
    owner: Obj | None = None,
    app: str = "web",
    phase: str = "Running",
    annotations: dict[str, str] | None = None,
    volumes: list[Obj] | None = None,
) -> Obj:
    meta: Obj = {"name": name, "namespace": "default", "labels": {"app": app}}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
            }
        ]
    if annotations:
        meta["annotations"] = annotations
    spec: Obj = {"nodeName": on, "containers": [{"name": "app", "image": "app"}]}
    if volumes:
        spec["volumes"] = volumes
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]},
    }


async def deployment(client: StoreClient, name: str, replicas: int) -> Obj:
    """A Deployment and its ReplicaSet (returned): the controller chain of the pods the tests write."""
    selector = {"matchLabels": {"app": name}}
    template = {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    }
    dep = await client.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": selector, "template": template},
        }
    )
    owner = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
        "uid": dep["metadata"]["uid"],
        "controller": True,
    }
    return await client.create(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": f"{name}-5d8f", "namespace": "default", "ownerReferences": [owner]},
            "spec": {"replicas": replicas, "selector": selector, "template": template},
        }
    )


def pdb(min_available: int) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web-pdb", "namespace": "default"},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}},
    }


def setup(server: ThreadedStore, *, budget: bool = False, extra: tuple[Obj, ...] = ()) -> Obj:
    """node1 and node2; Deployment web (2 replicas): web-1 on node1, web-2 on node2; with `budget`,
    web-pdb (minAvailable 2) which refuses to evict either. Returns web's ReplicaSet."""

    async def work(client: StoreClient) -> Obj:
        for name in ("node1", "node2"):
            await client.create(node(name))
        rs = await deployment(client, "web", 2)
        await client.create(pod("web-1", "node1", owner=rs))
        await client.create(pod("web-2", "node2", owner=rs))
        if budget:
            await client.create(pdb(2))
        for obj in extra:
            await client.create(obj)
        return rs

    return on_store(server, work)


def get(server: ThreadedStore, kind: str, name: str, namespace: str = "default") -> Obj | None:
    async def work(client: StoreClient) -> Obj | None:
        try:
            return await client.get(kind, name, namespace if kind != "Node" else None)
        except NotFound:
            return None

    return on_store(server, work)


def create(server: ThreadedStore, *objs: Obj) -> list[Obj]:
    async def work(client: StoreClient) -> list[Obj]:
        return [await client.create(obj) for obj in objs]

    return on_store(server, work)


class Kubelet:
    """Removes each terminating pod (``deletionTimestamp`` set) with a grace period of 0, as the node's
    kubelet does once the pod's containers have stopped; records whether the pod's node was cordoned
    when it saw the pod terminating."""

    def __init__(self, server: ThreadedStore, *, recreate_on: str | None = None) -> None:
        self.server = server
        self.recreate_on = recreate_on  # then put a new pod of the same name on this node
        self.stop = threading.Event()
        self.removed: list[str] = []
        self.node_cordoned: dict[str, bool] = {}
        self.future = asyncio.run_coroutine_threadsafe(self.run(), server.loop)

    async def run(self) -> None:
        async with StoreClient(self.server.socket_path) as client:
            while not self.stop.is_set():
                for item in (await client.list("Pod")).items:
                    meta, spec = item["metadata"], item["spec"]
                    if not meta.get("deletionTimestamp"):
                        continue
                    where = await client.get("Node", spec["nodeName"])
                    self.node_cordoned[meta["name"]] = bool((where.get("spec") or {}).get("unschedulable"))
                    with contextlib.suppress(NotFound):
                        await client.delete(
                            "Pod", meta["name"], meta["namespace"], uid=meta["uid"], grace_period=0
                        )
                        self.removed.append(meta["name"])
                        if self.recreate_on is not None:
                            await client.create(pod(meta["name"], self.recreate_on, app="tools"))
                await asyncio.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.future.result(10)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> ThreadedStore:
    """The store server of ``test_cli_store`` (its ``store`` fixture), under a name of this module."""
    found: ThreadedStore = request.getfixturevalue("store")
    return found


@pytest.fixture
def kubelet(server: ThreadedStore) -> Iterator[Kubelet]:
    running = Kubelet(server)
    try:
        yield running
    finally:
        running.close()


def later(server: ThreadedStore, delay: float, work: Callable[[StoreClient], Awaitable[Any]]) -> Any:
    """Run `work` on the store's loop after `delay` seconds (while the command under test runs)."""

    async def run() -> Any:
        await asyncio.sleep(delay)
        async with StoreClient(server.socket_path) as client:
            return await work(client)

    return asyncio.run_coroutine_threadsafe(run(), server.loop)


# -- the happy path -------------------------------------------------------------------------------


def test_drain_cordons_then_evicts_and_waits_like_kubectl(server: ThreadedStore, kubelet: Kubelet) -> None:
    mirror = pod(
        "controlplane-1", "node1", app="controlplane", annotations={"kubernetes.io/config.mirror": "x"}
    )
    setup(server, extra=(mirror,))
    result = ok("drain", "node1")
    assert result.stdout == (
        "node/node1 cordoned\nevicting pod default/web-1\npod/web-1 evicted\nnode/node1 drained\n"
    )
    assert result.stderr == ""
    node1 = get(server, "Node", "node1")
    assert node1 is not None and node1["spec"]["unschedulable"] is True
    assert kubelet.node_cordoned == {"web-1": True}  # the node was cordoned before the eviction
    assert get(server, "Pod", "web-1") is None
    web2 = get(server, "Pod", "web-2")
    assert web2 is not None and "deletionTimestamp" not in web2["metadata"]  # other nodes' pods stay
    # the mirror pod (no controller, yet no --force needed) is left alone without a word
    still = get(server, "Pod", "controlplane-1")
    assert still is not None and "deletionTimestamp" not in still["metadata"]
    # again: the node is already cordoned and only the mirror pod is left
    assert ok("drain", "node1").stdout == "node/node1 already cordoned\nnode/node1 drained\n"


def test_the_runtimes_control_plane_pods_are_skipped_as_mirror_pods(
    server: ThreadedStore, kubelet: Kubelet
) -> None:
    """runtime/bootstrap.py's control-plane pods (pinned, no controller) carry the mirror annotation."""
    objs = controlplane_objects(2, ["node1", "node2"], "clitest", Layout("clitest"))
    setup(server, extra=tuple(objs))
    result = ok("drain", "node1", "--timeout", "10s")
    assert result.stdout == (
        "node/node1 cordoned\nevicting pod default/web-1\npod/web-1 evicted\nnode/node1 drained\n"
    )
    assert result.stderr == ""
    cp1 = get(server, "Pod", "controlplane-1", SYSTEM_NAMESPACE)
    assert cp1 is not None and cp1["spec"]["nodeName"] == "node1"
    assert "deletionTimestamp" not in cp1["metadata"]


def test_the_drain_waits_until_the_pod_is_gone(server: ThreadedStore) -> None:
    """No kubelet: the evicted pod stays terminating, the drain waits for it and times out."""
    setup(server)
    result = ambit("drain", "node1", "--timeout", "2s")
    assert result.exit_code == 1, result.output
    assert result.stdout == "node/node1 cordoned\nevicting pod default/web-1\n"
    waiting = (
        'error when waiting for pod "web-1" in namespace "default" to terminate: context deadline exceeded'
    )
    assert result.stderr.splitlines() == [
        f'There are pending pods in node "node1" when an error occurred: {waiting}',
        "pod/web-1",
        f'error: unable to drain node "node1" due to error: {waiting}, continuing command...',
        "There are pending nodes to be drained:",
        " node1",
        waiting,
    ]
    web1 = get(server, "Pod", "web-1")
    assert web1 is not None and web1["metadata"].get("deletionTimestamp")  # evicted, still terminating


def test_a_pod_replaced_under_the_same_name_counts_as_gone(server: ThreadedStore) -> None:
    """The wait is for the evicted pod's uid: a new pod of the same name (elsewhere) does not hold it up."""
    setup(server)
    replacing = Kubelet(server, recreate_on="node2")
    try:
        result = ok("drain", "node1", "--timeout", "5s")
    finally:
        replacing.close()
    assert result.stdout.splitlines()[-2:] == ["pod/web-1 evicted", "node/node1 drained"]
    again = get(server, "Pod", "web-1")
    assert again is not None and again["spec"]["nodeName"] == "node2"


def test_finished_pods_go_and_the_pod_selector_narrows(server: ThreadedStore, kubelet: Kubelet) -> None:
    """A finished pod needs no controller; a pod the selector leaves out cannot refuse the drain."""
    done = pod("report-1", "node1", app="web", phase="Succeeded")
    bare = pod("bare", "node1", app="tools")
    setup(server, extra=(done, bare))
    result = ok("drain", "node1", "--pod-selector", "app=web")
    lines = result.stdout.splitlines()
    assert lines[0] == "node/node1 cordoned"
    assert lines[-1] == "node/node1 drained"
    assert sorted(lines[1:-1]) == [
        "evicting pod default/report-1",
        "evicting pod default/web-1",
        "pod/report-1 evicted",
        "pod/web-1 evicted",
    ]
    assert get(server, "Pod", "bare") is not None
    bad = ambit("drain", "node1", "--pod-selector", "app in (web")
    assert (bad.exit_code, bad.stderr) == (
        1,
        "error: --pod-selector=<pod_selector> must be a valid label selector\n",
    )


def test_a_missing_node(server: ThreadedStore) -> None:
    result = ambit("drain", "node9")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        'Error from server (NotFound): nodes "node9" not found\n',
    )


# -- what refuses the drain ------------------------------------------------------------------------


def test_pods_without_a_controller_refuse_unless_force(server: ThreadedStore, kubelet: Kubelet) -> None:
    setup(server, extra=(pod("bare", "node1", app="tools"), pod("solo", "node1", app="tools")))
    refused = ambit("drain", "node1")
    assert refused.exit_code == 1, refused.output
    assert refused.stdout == "node/node1 cordoned\n"
    why = (
        "cannot delete Pods that declare no controller (use --force to override): default/bare, default/solo"
    )
    assert refused.stderr.splitlines() == [
        f'error: unable to drain node "node1" due to error: {why}, continuing command...',
        "There are pending nodes to be drained:",
        " node1",
        why,
    ]
    web1 = get(server, "Pod", "web-1")
    assert web1 is not None and "deletionTimestamp" not in web1["metadata"]  # nothing was evicted

    forced = ok("drain", "node1", "--force")
    assert forced.stderr == "Warning: deleting Pods that declare no controller: default/bare, default/solo\n"
    lines = forced.stdout.splitlines()
    assert (lines[0], lines[-1]) == ("node/node1 already cordoned", "node/node1 drained")
    assert sorted(lines[1:-1]) == sorted(
        [f"evicting pod default/{name}" for name in ("bare", "solo", "web-1")]
        + [f"pod/{name} evicted" for name in ("bare", "solo", "web-1")]
    )
    assert sorted(kubelet.removed) == ["bare", "solo", "web-1"]


def test_daemonset_pods_need_ignore_daemonsets_and_stay(server: ThreadedStore) -> None:
    setup(server)
    (ds,) = create(
        server,
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"}},
    )
    create(server, pod("agent-x1", "node1", owner=ds, app="agent"))
    refused = ambit("drain", "node1", "--dry-run=client", "--timeout", "5s")
    why = "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/agent-x1"
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[-1] == why
    assert refused.stderr.splitlines()[0] == (
        f'error: unable to drain node "node1" due to error: {why}, continuing command...'
    )
    ignored = ok("drain", "node1", "--ignore-daemonsets", "--dry-run=client", "--timeout", "5s")
    assert ignored.stderr == "Warning: ignoring DaemonSet-managed Pods: default/agent-x1\n"
    assert ignored.stdout == (
        "node/node1 cordoned (dry run)\nevicting pod default/web-1 (dry run)\nnode/node1 drained (dry run)\n"
    )


def test_emptydir_pods_need_delete_emptydir_data(server: ThreadedStore) -> None:
    rs = setup(server)
    create(server, pod("cache-1", "node1", owner=rs, volumes=[{"name": "scratch", "emptyDir": {}}]))
    refused = ambit("drain", "node1", "--dry-run=client", "--timeout", "5s")
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[-1] == (
        "cannot delete Pods with local storage (use --delete-emptydir-data to override): default/cache-1"
    )
    allowed = ok("drain", "node1", "--dry-run=client", "--delete-emptydir-data", "--timeout", "5s")
    assert "evicting pod default/cache-1 (dry run)" in allowed.stdout.splitlines()


# -- PodDisruptionBudgets --------------------------------------------------------------------------


def test_a_budget_refusal_is_retried_until_a_replacement_is_ready(
    server: ThreadedStore, kubelet: Kubelet
) -> None:
    """minAvailable 2 with 2 ready pods refuses; a ready replacement on node2 lets the retry through.
    zeta-1 (not covered by the budget) is evicted meanwhile: the evictions run concurrently."""
    rs = setup(server, budget=True)

    async def second_workload(client: StoreClient) -> None:
        zeta = await deployment(client, "zeta", 1)
        await client.create(pod("zeta-1", "node1", owner=zeta, app="zeta"))

    on_store(server, second_workload)

    async def replacement(client: StoreClient) -> None:
        # once the drain has cordoned node1 (its first eviction follows at once), well before the retry
        for _ in range(500):
            if ((await client.get("Node", "node1")).get("spec") or {}).get("unschedulable"):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.5)
        await client.create(pod("web-3", "node2", owner=rs))

    added = later(server, 0, replacement)
    result = ok("drain", "node1", "--timeout", "20s")
    added.result(5)
    assert result.stdout == (
        "node/node1 cordoned\n"
        "evicting pod default/web-1\n"
        "evicting pod default/zeta-1\n"
        "pod/zeta-1 evicted\n"
        "evicting pod default/web-1\n"
        "pod/web-1 evicted\n"
        "node/node1 drained\n"
    )
    assert result.stderr == RETRY_LINE + "\n"
    assert get(server, "Pod", "web-1") is None
    assert EVICTION_RETRY_DELAY == 5.0


def test_the_timeout_ends_a_refused_drain_naming_the_budget(server: ThreadedStore, kubelet: Kubelet) -> None:
    setup(server, budget=True)
    result = ambit("drain", "node1", "--timeout", "1s")
    assert result.exit_code == 1, result.output
    timed_out = 'error when evicting pods/"web-1" -n "default": global timeout reached: 1s'
    assert result.stdout == "node/node1 cordoned\nevicting pod default/web-1\nevicting pod default/web-1\n"
    assert result.stderr.splitlines() == [
        RETRY_LINE,
        f'There are pending pods in node "node1" when an error occurred: {timed_out}',
        "pod/web-1",
        f'error: unable to drain node "node1" due to error: {timed_out}, continuing command...',
        "There are pending nodes to be drained:",
        " node1",
        timed_out,
    ]
    web1 = get(server, "Pod", "web-1")
    assert web1 is not None and "deletionTimestamp" not in web1["metadata"]  # the budget held
    assert kubelet.removed == []


def test_an_eviction_error_other_than_a_refusal_fails_at_once(server: ThreadedStore) -> None:
    """Two budgets over one pod: the store answers 500, which is not retried."""
    second = pdb(1)
    second["metadata"]["name"] = "web-pdb-2"
    setup(server, budget=True, extra=(second,))
    result = ambit("drain", "node1", "--timeout", "10s")
    assert result.exit_code == 1, result.output
    why = (
        'error when evicting pods/"web-1" -n "default": This pod has more than one PodDisruptionBudget, '
        "which the eviction subresource does not support."
    )
    assert result.stdout == "node/node1 cordoned\nevicting pod default/web-1\n"
    assert result.stderr.splitlines()[-1] == why
    assert "will retry" not in result.stderr


def test_disable_eviction_deletes_past_the_budget(server: ThreadedStore, kubelet: Kubelet) -> None:
    setup(server, budget=True)
    result = ok("drain", "node1", "--disable-eviction", "--timeout", "10s")
    assert result.stdout == "node/node1 cordoned\npod/web-1 deleted\nnode/node1 drained\n"
    assert result.stderr == ""
    assert kubelet.removed == ["web-1"]


def test_grace_period_is_passed_to_the_eviction(server: ThreadedStore) -> None:
    """No kubelet: the evicted pod stays terminating with the requested grace period."""
    setup(server)
    assert ambit("drain", "node1", "--grace-period", "7", "--timeout", "300ms").exit_code == 1
    web1 = get(server, "Pod", "web-1")
    assert web1 is not None and web1["metadata"]["deletionGracePeriodSeconds"] == 7


# -- dry run ---------------------------------------------------------------------------------------


def test_dry_run_client_changes_nothing(server: ThreadedStore) -> None:
    setup(server, budget=True)
    expected = (
        "node/node1 cordoned (dry run)\nevicting pod default/web-1 (dry run)\nnode/node1 drained (dry run)\n"
    )
    assert ok("drain", "node1", "--dry-run=client", "--timeout", "5s").stdout == expected
    assert (
        ok("drain", "node1", "--timeout", "5s", "--dry-run").stdout == expected
    )  # a bare --dry-run is client
    node1 = get(server, "Node", "node1")
    assert node1 is not None and not (node1.get("spec") or {}).get("unschedulable")
    web1 = get(server, "Pod", "web-1")
    assert web1 is not None and "deletionTimestamp" not in web1["metadata"]


# -- kubectl's formats ------------------------------------------------------------------------------


def test_go_durations_and_aggregates_read_as_kubectl_prints_them() -> None:
    second = 1_000_000_000
    assert [go_duration(n) for n in (0, 5 * second, 90 * second, 3600 * second, 1500 * 1_000_000)] == [
        "0s",
        "5s",
        "1m30s",
        "1h0m0s",
        "1.5s",
    ]
    assert go_duration(300 * 1_000_000) == "300ms"
    assert aggregate(["a"]) == "a"
    assert aggregate(["a", "a"]) == "a"
    assert aggregate(["a", "b"]) == "[a, b]"
