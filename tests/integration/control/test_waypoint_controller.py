"""The waypoint controller against a real store server (full schema validation, owner cascade)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ambit.control.waypoints import WaypointController, desired_objects, reconcile, write_status
from ambit.store import StoreClient
from ambit.store.server import StoreServer
from ambit.store.types import NotFound

OWNED = ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget")


def gateway(
    name: str = "waypoint", *, replicas: str | None = None, cls: str = "istio-waypoint"
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "labels": {"istio.io/waypoint-for": "service"},
    }
    if replicas is not None:
        meta["annotations"] = {"ambit.dev/replicas": replicas}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": meta,
        "spec": {
            "gatewayClassName": cls,
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        },
    }


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="ambit-wp-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def client(sock_dir: Path) -> AsyncIterator[StoreClient]:
    server = StoreServer(sock_dir / "data", sock_dir / "store.sock")
    await server.start()
    try:
        async with StoreClient(server.socket_path) as c:
            yield c
    finally:
        await server.close()


async def owned(client: StoreClient, name: str = "waypoint") -> dict[str, dict[str, Any]]:
    found = {}
    for kind in OWNED:
        with contextlib.suppress(NotFound):
            found[kind] = await client.get(kind, name, "default")
    return found


async def eventually(predicate: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - polling the store, which has no event for it
            await asyncio.sleep(0.02)


async def test_gateway_becomes_deployment_service_account_and_pdb(client: StoreClient) -> None:
    gw = await client.create(gateway(replicas="3"))
    controller = WaypointController(client)
    await controller.start()
    try:

        async def all_there() -> bool:
            return len(await owned(client)) == 4

        await eventually(all_there)
        objs = await owned(client)
        assert objs["Deployment"]["spec"]["replicas"] == 3
        tpl = objs["Deployment"]["spec"]["template"]
        assert tpl["spec"]["serviceAccountName"] == "waypoint"
        assert tpl["metadata"]["labels"]["istio.io/dataplane-mode"] == "none"
        assert tpl["spec"]["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
        assert [p["port"] for p in objs["Service"]["spec"]["ports"]] == [15008, 15021]
        assert objs["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
        for obj in objs.values():
            [ref] = obj["metadata"]["ownerReferences"]
            assert (ref["kind"], ref["name"], ref["uid"]) == ("Gateway", "waypoint", gw["metadata"]["uid"])
    finally:
        await controller.close()


async def test_default_replicas_is_two_and_other_classes_are_ignored(client: StoreClient) -> None:
    await client.create(gateway("ingress", cls="istio"))
    await client.create(gateway("wp2", cls="ambit-waypoint"))
    controller = WaypointController(client)
    await controller.start()
    try:

        async def wp2_ready() -> bool:
            return len(await owned(client, "wp2")) == 4

        await eventually(wp2_ready)
        assert (await owned(client, "wp2"))["Deployment"]["spec"]["replicas"] == 2
        assert await owned(client, "ingress") == {}
    finally:
        await controller.close()


async def test_deleting_the_gateway_removes_its_objects(client: StoreClient) -> None:
    gw = await client.create(gateway())
    await reconcile(client, gw)
    assert len(await owned(client)) == 4
    await client.delete("Gateway", "waypoint", "default")
    assert await owned(client) == {}


async def test_two_controllers_at_once_produce_one_set(client: StoreClient, sock_dir: Path) -> None:
    async with StoreClient(sock_dir / "store.sock") as other:
        gw = await client.create(gateway(replicas="2"))
        first = await asyncio.gather(*(reconcile(c, gw) for c in (client, other, client, other)))
        outcomes = [r[f"{k}/default/waypoint"] for r in first for k in OWNED]
        assert outcomes.count("created") == 4, "each object created exactly once"
        listed = await client.list(list(OWNED), "default")
        assert sorted(o["kind"] for o in listed.items) == sorted(OWNED)


async def test_drift_is_repaired_but_a_scaled_replica_count_is_left_to_the_scaler(
    client: StoreClient,
) -> None:
    gw = await client.create(gateway())
    await reconcile(client, gw)
    dep = (await owned(client))["Deployment"]
    assert dep["metadata"]["annotations"]["ambit.dev/gateway-replicas"] == ""
    dep["spec"]["replicas"] = 7  # an autoscaler or `ambit scale` at work
    dep["spec"]["template"]["spec"]["serviceAccountName"] = "someone-else"  # drift
    await client.update(dep)
    assert (await reconcile(client, gw))["Deployment/default/waypoint"] == "updated"
    dep = (await owned(client))["Deployment"]
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "waypoint", "drift repaired"
    assert dep["spec"]["replicas"] == 7, "the scaler's count stays"
    assert (await reconcile(client, gw))["Deployment/default/waypoint"] == "unchanged", "no fight on resync"


async def test_a_changed_replica_annotation_sets_the_count_once(client: StoreClient) -> None:
    gw = await client.create(gateway())
    await reconcile(client, gw)
    gw["metadata"]["annotations"] = {"ambit.dev/replicas": "4"}
    gw = await client.update(gw)
    await reconcile(client, gw)
    dep = (await owned(client))["Deployment"]
    assert dep["spec"]["replicas"] == 4
    assert dep["metadata"]["annotations"]["ambit.dev/gateway-replicas"] == "4"
    dep["spec"]["replicas"] = 1
    await client.update(dep)
    assert (await reconcile(client, gw))["Deployment/default/waypoint"] == "unchanged"
    assert (await owned(client))["Deployment"]["spec"]["replicas"] == 1
    del gw["metadata"]["annotations"]  # back to the default: a change of the annotation too
    gw = await client.update(gw)
    await reconcile(client, gw)
    assert (await owned(client))["Deployment"]["spec"]["replicas"] == 2


async def test_infrastructure_labels_and_annotations_and_default_resources(client: StoreClient) -> None:
    gw = gateway()
    gw["spec"]["infrastructure"] = {
        "labels": {"team": "shop", "istio.io/dataplane-mode": "ambient"},
        "annotations": {"example.com/owner": "alice"},
    }
    await reconcile(client, await client.create(gw))
    objs = await owned(client)
    for obj in objs.values():
        assert obj["metadata"]["labels"]["team"] == "shop"
        assert obj["metadata"]["annotations"]["example.com/owner"] == "alice"
    template = objs["Deployment"]["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "shop"
    assert template["metadata"]["labels"]["istio.io/dataplane-mode"] == "none", "never enrolled"
    assert template["metadata"]["annotations"] == {"example.com/owner": "alice"}
    [container] = template["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }


async def test_the_controller_writes_a_programmed_status(client: StoreClient) -> None:
    await client.create(gateway())
    controller = WaypointController(client)
    await controller.start()
    try:

        async def programmed() -> bool:
            gw = await client.get("Gateway", "waypoint", "default")
            return any(
                c["type"] == "Programmed" and c["status"] == "True"
                for c in (gw.get("status") or {}).get("conditions", [])
            )

        await eventually(programmed)
        gw = await client.get("Gateway", "waypoint", "default")
        service = await client.get("Service", "waypoint", "default")
        assert gw["status"]["addresses"] == [{"type": "IPAddress", "value": service["spec"]["clusterIP"]}]
    finally:
        await controller.close()


async def test_two_writers_settle_on_one_status_without_flapping(client: StoreClient, sock_dir: Path) -> None:
    gw = await client.create(gateway())
    await reconcile(client, gw)
    clocks = iter(f"2026-12-07T10:00:{s:02d}Z" for s in range(60))
    async with StoreClient(sock_dir / "store.sock") as other:
        wrote = await asyncio.gather(
            *(write_status(c, gw, now=lambda: next(clocks)) for c in (client, other, client, other))
        )
        assert wrote.count(True) == 1, "one writer wins; the others find its status and write nothing"
        settled = await client.get("Gateway", "waypoint", "default")
        again = await asyncio.gather(
            *(write_status(c, gw, now=lambda: next(clocks)) for c in (client, other))
        )
        assert again == [False, False]
        after = await client.get("Gateway", "waypoint", "default")
        assert after["metadata"]["resourceVersion"] == settled["metadata"]["resourceVersion"]
    # Control: a real transition (the Service goes) is written, with a new lastTransitionTime.
    await client.delete("Service", "waypoint", "default")
    assert await write_status(client, gw, now=lambda: "2026-12-07T11:00:00Z")
    gw = await client.get("Gateway", "waypoint", "default")
    programmed = next(c for c in gw["status"]["conditions"] if c["type"] == "Programmed")
    assert (programmed["status"], programmed["lastTransitionTime"]) == ("False", "2026-12-07T11:00:00Z")


def test_desired_objects_validate_against_the_schemas() -> None:
    from ambit.resources import validate

    gw = gateway()
    gw["metadata"]["uid"] = "00000000-0000-0000-0000-000000000001"
    for obj in desired_objects(gw):
        validate(obj)


async def test_the_autoscale_annotation_makes_an_hpa_from_two_replicas_and_its_removal_deletes_it(
    client: StoreClient,
) -> None:
    gw = gateway()
    gw["metadata"]["annotations"] = {
        "ambit.dev/autoscale-max-replicas": "4",
        "ambit.dev/autoscale-target-rps": "20",
    }
    gw = await client.create(gw)
    await reconcile(client, gw)
    hpa = await client.get("HorizontalPodAutoscaler", "waypoint", "default")
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (
        2,
        4,
    )  # never 1: the PDB (minAvailable 1) must allow a drain
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "waypoint"}
    assert spec["metrics"][0]["pods"] == {
        "metric": {"name": "istio_requests_per_second"},
        "target": {"type": "AverageValue", "averageValue": "20"},
    }
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == gw["metadata"]["uid"]
    del gw["metadata"]["annotations"]
    gw = await client.update(gw)
    assert (await reconcile(client, gw))["HorizontalPodAutoscaler"] == "deleted"
    with pytest.raises(NotFound):
        await client.get("HorizontalPodAutoscaler", "waypoint", "default")
    # control: without the annotation there never is one
    assert (await reconcile(client, gw))["HorizontalPodAutoscaler"] == "absent"


def test_the_autoscaler_validates_against_the_schemas() -> None:
    from ambit.resources import validate

    gw = gateway()
    gw["metadata"]["uid"] = "00000000-0000-0000-0000-000000000001"
    gw["metadata"]["annotations"] = {"ambit.dev/autoscale-max-replicas": "1"}  # raised to the minimum, 2
    [hpa] = [o for o in desired_objects(gw) if o["kind"] == "HorizontalPodAutoscaler"]
    validate(hpa)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 2)
