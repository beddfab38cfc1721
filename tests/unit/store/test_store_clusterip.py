"""ClusterIP allocation, as the API server does it: lowest free, explicit must be free and in range,
headless stays headless, immutable afterwards."""

from __future__ import annotations

import pytest

from ambit.store.clusterip import ClusterIPError, allocate, assign
from ambit.store.core import ObjectStore
from ambit.store.types import Invalid, Op


def svc(name: str, ip: str | None = None, **spec: object) -> dict[str, object]:
    body: dict[str, object] = {"ports": [{"port": 80}], **spec}
    if ip is not None:
        body["clusterIP"] = ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": body,
    }


def create(store: ObjectStore, *objs: dict[str, object]) -> list[dict[str, object]]:
    prepared = store.prepare([Op("create", o) for o in objs])
    store.commit(prepared)
    return [r.object for r in prepared.results]


def test_lowest_free_address_from_dot_ten() -> None:
    assert allocate(set()) == "10.96.0.10"
    assert allocate({"10.96.0.10", "10.96.0.11"}) == "10.96.0.12"


def test_services_in_one_transaction_get_distinct_addresses() -> None:
    store = ObjectStore()
    a, b, c = create(store, svc("a"), svc("b"), svc("c", ip="10.96.0.20"))
    ips = [o["spec"]["clusterIP"] for o in (a, b, c)]  # type: ignore[index]
    assert ips == ["10.96.0.10", "10.96.0.11", "10.96.0.20"]
    [d] = create(store, svc("d"))
    assert d["spec"]["clusterIP"] == "10.96.0.12"  # type: ignore[index]
    assert a["spec"]["clusterIPs"] == ["10.96.0.10"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("ip", "message"),
    [("10.97.0.1", "not in the service range"), ("nope", "not an IP"), ("10.96.0.10", "already allocated")],
)
def test_bad_explicit_address_is_refused_with_field(ip: str, message: str) -> None:
    store = ObjectStore()
    create(store, svc("first"))
    with pytest.raises(Invalid, match=f"spec.clusterIP: .*{message}"):
        store.prepare([Op("create", svc("second", ip=ip))])


def test_headless_and_external_name_get_no_address() -> None:
    store = ObjectStore()
    headless, external = create(store, svc("h", ip="None"), svc("e", type="ExternalName"))
    assert headless["spec"]["clusterIP"] == "None"  # type: ignore[index]
    assert "clusterIP" not in external["spec"]  # type: ignore[operator]


def test_address_is_kept_on_apply_and_immutable_on_update() -> None:
    store = ObjectStore()
    [created] = create(store, svc("web"))
    prepared = store.prepare([Op("apply", svc("web", ports=[{"port": 81}]))])
    store.commit(prepared)
    assert prepared.results[0].object["spec"]["clusterIP"] == "10.96.0.10"
    changed = {**prepared.results[0].object, "spec": {"ports": [{"port": 81}], "clusterIP": "10.96.0.99"}}
    with pytest.raises(Invalid, match="immutable"):
        store.prepare([Op("update", changed)])
    assert created["metadata"]["uid"]  # type: ignore[index]


def test_assign_is_pure_on_its_inputs() -> None:
    used: set[str] = set()
    spec: dict[str, object] = {}
    assign(spec, None, used)
    assert spec["clusterIP"] == "10.96.0.10" and used == {"10.96.0.10"}
    with pytest.raises(ClusterIPError):
        assign({"clusterIP": "10.96.0.10"}, None, used)
