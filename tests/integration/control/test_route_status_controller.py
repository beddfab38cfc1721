"""Route status (GAMMA) against a real store server: the controller, racing writers, two replicas."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from ambit.control.app import ControlPlane, ControlPlaneConfig
from ambit.control.route_status_writer import RouteStatusController, write_route_status
from ambit.identity.ca import CertificateAuthority
from ambit.store import StoreClient
from ambit.store.server import StoreServer


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def http_route(name: str = "web", *, backend: str = "web-v1") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
            "rules": [{"backendRefs": [{"name": backend, "port": 80}]}],
        },
    }


@pytest.fixture
def root() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="ambit-rs-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def server(root: Path) -> AsyncIterator[StoreServer]:
    store = StoreServer(root / "data", root / "store.sock")
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def client(server: StoreServer) -> AsyncIterator[StoreClient]:
    async with StoreClient(server.socket_path) as c:
        for name in ("web", "web-v1"):
            await c.create(service(name))
        yield c


def conditions(route: dict[str, Any]) -> dict[str, dict[str, Any]]:
    parents = (route.get("status") or {}).get("parents") or [{}]
    return {c["type"]: c for c in parents[0].get("conditions", [])}


def verdict(route: dict[str, Any], kind: str) -> tuple[str, str] | None:
    found = conditions(route).get(kind)
    return None if found is None else (found["status"], found["reason"])


async def eventually(predicate: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - polling the store, which has no event for it
            await asyncio.sleep(0.02)


async def test_the_controller_accepts_a_route_and_follows_its_backend_service(client: StoreClient) -> None:
    await client.create(http_route())
    controller = RouteStatusController(client)
    await controller.start()
    try:

        async def resolved() -> bool:
            route = await client.get("HTTPRoute", "web", "default")
            return verdict(route, "ResolvedRefs") == ("True", "ResolvedRefs")

        await eventually(resolved)
        route = await client.get("HTTPRoute", "web", "default")
        [entry] = route["status"]["parents"]
        assert entry["parentRef"] == {
            "group": "",
            "kind": "Service",
            "name": "web",
            "namespace": "default",
            "port": 80,
        }
        assert entry["controllerName"] == "istio.io/gateway-controller"
        assert verdict(route, "Accepted") == ("True", "Accepted")
        assert {c["observedGeneration"] for c in entry["conditions"]} == {route["metadata"]["generation"]}
        accepted_since = conditions(route)["Accepted"]["lastTransitionTime"]

        await client.delete(
            "Service", "web-v1", "default"
        )  # the backend goes: a Service event, no route event

        async def backend_not_found() -> bool:
            route = await client.get("HTTPRoute", "web", "default")
            return verdict(route, "ResolvedRefs") == ("False", "BackendNotFound")

        await eventually(backend_not_found)
        route = await client.get("HTTPRoute", "web", "default")
        assert "does not exist" in conditions(route)["ResolvedRefs"]["message"]
        assert conditions(route)["Accepted"]["lastTransitionTime"] == accepted_since, "Accepted did not move"

        await client.create(service("web-v1"))  # and comes back
        await eventually(resolved)
    finally:
        await controller.close()


async def test_racing_writers_write_once_and_then_never(client: StoreClient, server: StoreServer) -> None:
    await client.create(http_route())
    clocks = iter(f"2026-12-07T10:00:{s:02d}Z" for s in range(60))
    async with StoreClient(server.socket_path) as other:
        writers = (client, other, client, other)
        wrote = await asyncio.gather(
            *(write_route_status(c, "HTTPRoute", "web", "default", now=lambda: next(clocks)) for c in writers)
        )
        assert wrote.count(True) == 1, "one writer wins; the others find its status and write nothing"
        settled = await client.get("HTTPRoute", "web", "default")
        again = await asyncio.gather(
            *(write_route_status(c, "HTTPRoute", "web", "default", now=lambda: next(clocks)) for c in writers)
        )
        assert again == [False] * 4
        after = await client.get("HTTPRoute", "web", "default")
        assert after["metadata"]["resourceVersion"] == settled["metadata"]["resourceVersion"]
    assert await write_route_status(client, "HTTPRoute", "nope", "default") is False, "a missing route"


async def test_two_control_plane_replicas_leave_the_status_stable(
    root: Path, server: StoreServer, client: StoreClient
) -> None:
    ca = CertificateAuthority.create("cluster.local")
    ca.save(root / "state" / "ca")
    config = ControlPlaneConfig(
        state_dir=root / "state",
        grpc_host="127.0.0.1",
        grpc_port=0,
        token_port=0,
        http_host="127.0.0.1",
        http_port=0,
        debounce=0.05,
        run_waypoint_controller=False,
    )
    await client.create(http_route())
    async with AsyncExitStack() as stack:
        for _ in range(2):
            source = StoreClient(server.socket_path)
            stack.push_async_callback(source.close)
            plane = ControlPlane(config, source)
            await plane.start()
            stack.push_async_callback(plane.close)
            assert plane.route_status is not None

        async def settled(expected: tuple[str, str]) -> str:
            """The route's resourceVersion once the status says ``expected`` and stays put for 0.5 s."""

            async def says() -> bool:
                route = await client.get("HTTPRoute", "web", "default")
                return verdict(route, "ResolvedRefs") == expected

            await eventually(says)
            version = (await client.get("HTTPRoute", "web", "default"))["metadata"]["resourceVersion"]
            for _ in range(10):  # both replicas see every write (theirs and the other's) and recompute
                await asyncio.sleep(0.05)
                route = await client.get("HTTPRoute", "web", "default")
                assert route["metadata"]["resourceVersion"] == version, "the status flapped"
            return str(version)

        await settled(("True", "ResolvedRefs"))
        # A Service change that changes no status: both replicas recompute, neither writes.
        before = await settled(("True", "ResolvedRefs"))
        web = await client.get("Service", "web", "default")
        web["metadata"]["labels"] = {"touched": "yes"}
        await client.update(web)
        await asyncio.sleep(0.3)
        assert (await client.get("HTTPRoute", "web", "default"))["metadata"]["resourceVersion"] == before

        # A real transition is written once by one of them, then stays.
        await client.delete("Service", "web-v1", "default")
        version = await settled(("False", "BackendNotFound"))
        assert int(version) > int(before)


GRANT = {
    "apiVersion": "gateway.networking.k8s.io/v1beta1",
    "kind": "ReferenceGrant",
    "metadata": {"name": "from-default", "namespace": "other"},
    "spec": {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "default"}],
        "to": [{"group": "", "kind": "Service"}],
    },
}


async def test_a_reference_grant_resolves_a_backend_in_another_namespace(client: StoreClient) -> None:
    """No grant: RefNotPermitted; a grant appears in the backend's namespace: ResolvedRefs (a grant event,
    no route event); it goes: RefNotPermitted again."""
    await client.create({**service("shared"), "metadata": {"name": "shared", "namespace": "other"}})
    route = http_route()
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "shared", "namespace": "other", "port": 80}]
    await client.create(route)
    controller = RouteStatusController(client)
    await controller.start()
    try:

        def says(expected: tuple[str, str]) -> Any:
            async def check() -> bool:
                current = await client.get("HTTPRoute", "web", "default")
                return verdict(current, "ResolvedRefs") == expected

            return check

        await eventually(says(("False", "RefNotPermitted")))
        await client.create(GRANT)
        await eventually(says(("True", "ResolvedRefs")))
        await client.delete("ReferenceGrant", "from-default", "other")
        await eventually(says(("False", "RefNotPermitted")))
    finally:
        await controller.close()
