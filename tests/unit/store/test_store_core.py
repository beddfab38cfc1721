"""The store's pure state machine: CAS, transactions, cascading deletes, event history and 410."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from ambit.store.core import ObjectStore, Schema, parse_ops
from ambit.store.types import (
    ADDED,
    DELETED,
    MODIFIED,
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    Obj,
    Op,
    object_key,
)


def svc(name: str, namespace: str | None = "default", port: Any = 80, **meta: Any) -> Obj:
    metadata: Obj = {"name": name, **meta}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": {"ports": [{"port": port}]}}


def ns(name: str, **meta: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **meta}}


def make(history: int = 100) -> ObjectStore:
    uids = (f"uid-{i}" for i in itertools.count(1))
    return ObjectStore(history=history, clock=lambda: "2026-01-01T00:00:00Z", new_uid=lambda: next(uids))


def write(store: ObjectStore, *ops: Op) -> list[Any]:
    prepared = store.prepare(list(ops))
    store.commit(prepared)
    return prepared.results


def test_create_assigns_uid_revision_and_defaults_the_namespace() -> None:
    store = make()
    [result] = write(store, Op("create", svc("web", namespace=None)))
    assert result.result == "created"
    meta = result.object["metadata"]
    assert meta["namespace"] == "default"
    assert meta["uid"] == "uid-1"
    assert meta["resourceVersion"] == "1"
    assert meta["creationTimestamp"] == "2026-01-01T00:00:00Z"
    assert meta["generation"] == 1
    assert store.get(("Service", "default", "web")) == result.object
    assert store.revision == 1


def test_cluster_scoped_objects_have_no_namespace() -> None:
    store = make()
    [result] = write(store, Op("create", ns("demo", namespace="ignored")))
    assert "namespace" not in result.object["metadata"]
    assert object_key(result.object) == ("Namespace", "", "demo")
    assert store.key("Namespace", "whatever", "demo") == ("Namespace", "", "demo")


def test_create_twice_is_already_exists() -> None:
    store = make()
    write(store, Op("create", svc("web")))
    with pytest.raises(AlreadyExists) as info:
        store.prepare([Op("create", svc("web"))])
    assert info.value.status == 409
    assert info.value.index == 0


def test_update_is_compare_and_swap() -> None:
    store = make()
    [created] = write(store, Op("create", svc("web")))
    stale = created.object
    changed = {**stale, "spec": {"ports": [{"port": 81}]}}
    [updated] = write(store, Op("update", changed))
    assert updated.result == "updated"
    assert updated.object["metadata"]["resourceVersion"] == "2"
    assert updated.object["metadata"]["uid"] == "uid-1"
    assert updated.object["metadata"]["generation"] == 2
    # writing again from the stale read conflicts
    with pytest.raises(Conflict) as info:
        store.prepare([Op("update", {**stale, "spec": {"ports": [{"port": 82}]}})])
    assert info.value.status == 409
    assert "modified" in info.value.message


def test_update_without_resource_version_is_refused() -> None:
    store = make()
    write(store, Op("create", svc("web")))
    with pytest.raises(Conflict, match="resourceVersion must be set"):
        store.prepare([Op("update", svc("web", port=81))])


def test_update_of_a_missing_object_is_not_found() -> None:
    with pytest.raises(NotFound):
        make().prepare([Op("update", svc("web", resourceVersion="1"))])


def test_update_with_no_change_writes_nothing() -> None:
    store = make()
    [created] = write(store, Op("create", svc("web")))
    prepared = store.prepare([Op("update", created.object)])
    assert prepared.events == []
    assert prepared.results[0].result == "unchanged"


def test_status_change_keeps_generation() -> None:
    store = make()
    [created] = write(store, Op("create", svc("web")))
    [updated] = write(store, Op("update", {**created.object, "status": {"loadBalancer": {}}}))
    assert updated.object["metadata"]["generation"] == 1
    assert updated.object["metadata"]["resourceVersion"] == "2"


def test_apply_creates_configures_and_reports_unchanged() -> None:
    store = make()
    assert write(store, Op("apply", svc("web")))[0].result == "created"
    assert write(store, Op("apply", svc("web")))[0].result == "unchanged"
    assert store.revision == 1
    assert write(store, Op("apply", svc("web", port=81)))[0].result == "configured"
    assert store.revision == 2
    # apply ignores a stale resourceVersion in the manifest (last writer wins)
    assert write(store, Op("apply", svc("web", port=82, resourceVersion="1")))[0].result == "configured"


def test_apply_keeps_status_and_owner_references_it_does_not_carry() -> None:
    store = make()
    [created] = write(store, Op("create", svc("web")))
    owned = {
        **created.object,
        "status": {"phase": "x"},
        "metadata": {**created.object["metadata"], "ownerReferences": [{"uid": "owner", "kind": "Gateway"}]},
    }
    write(store, Op("update", owned))
    [applied] = write(store, Op("apply", svc("web", port=81)))
    assert applied.object["status"] == {"phase": "x"}
    assert applied.object["metadata"]["ownerReferences"] == [{"uid": "owner", "kind": "Gateway"}]
    assert applied.object["metadata"]["uid"] == "uid-1"


def test_apply_keeps_assigned_cluster_ip_and_node_name() -> None:
    store = make()
    [created] = write(store, Op("create", svc("web")))
    assigned = {**created.object, "spec": {**created.object["spec"], "clusterIP": "10.96.0.10"}}
    write(store, Op("update", assigned))
    [applied] = write(store, Op("apply", svc("web")))
    assert applied.result == "unchanged"
    [applied] = write(store, Op("apply", svc("web", port=81)))
    assert applied.object["spec"] == {
        "ports": [{"port": 81}],
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"],
    }


def test_the_default_namespace_cannot_be_deleted() -> None:
    store = make()
    write(store, Op("create", ns("default")))
    with pytest.raises(Forbidden):
        store.prepare([Op("delete", ns("default"))])


def test_transaction_is_all_or_nothing() -> None:
    store = make()
    write(store, Op("create", svc("exists")))
    with pytest.raises(AlreadyExists) as info:
        store.prepare([Op("create", svc("a")), Op("create", svc("b")), Op("create", svc("exists"))])
    assert info.value.index == 2
    assert store.revision == 1
    assert store.get(("Service", "default", "a")) is None


def test_transaction_gets_consecutive_revisions_and_sees_its_own_writes() -> None:
    store = make()
    prepared = store.prepare(
        [
            Op("create", svc("a")),
            Op("apply", svc("a", port=81)),
            Op("create", svc("b")),
            Op("delete", svc("a")),
        ]
    )
    assert [e.revision for e in prepared.events] == [1, 2, 3, 4]
    assert [e.type for e in prepared.events] == [ADDED, MODIFIED, ADDED, DELETED]
    assert [r.result for r in prepared.results] == ["created", "configured", "created", "deleted"]
    store.commit(prepared)
    assert list(store.objects) == [("Service", "default", "b")]
    assert store.revision == 4


def test_commit_refuses_a_stale_preparation() -> None:
    store = make()
    first = store.prepare([Op("create", svc("a"))])
    store.commit(store.prepare([Op("create", svc("b"))]))
    with pytest.raises(RuntimeError):
        store.commit(first)


def test_validation_failure_is_invalid_with_the_index() -> None:
    def validate(obj: Obj) -> Obj:
        if obj["kind"] == "Service" and not isinstance(obj["spec"]["ports"][0]["port"], int):
            raise ValueError(f"Service/{obj['metadata']['name']}: spec.ports[0].port: must be an integer")
        return obj

    store = ObjectStore(Schema(validate=validate, is_namespaced=lambda kind: kind != "Namespace"))
    with pytest.raises(Invalid) as info:
        store.prepare([Op("apply", svc("ok")), Op("apply", svc("bad", port="abc"))])
    assert info.value.status == 422
    assert info.value.index == 1
    assert "spec.ports[0].port" in info.value.message
    assert store.revision == 0


def test_validation_may_normalize() -> None:
    def validate(obj: Obj) -> Obj:
        return {**obj, "spec": {**obj["spec"], "type": "ClusterIP"}}

    store = ObjectStore(Schema(validate=validate, is_namespaced=lambda kind: True))
    [result] = write(store, Op("create", svc("web")))
    assert result.object["spec"]["type"] == "ClusterIP"


def test_delete_with_precondition() -> None:
    store = make()
    write(store, Op("create", svc("web")))
    with pytest.raises(Conflict):
        store.prepare([Op("delete", svc("web", resourceVersion="7"))])
    [result] = write(store, Op("delete", svc("web", resourceVersion="1")))
    assert result.result == "deleted"
    assert result.object["metadata"]["resourceVersion"] == "2"  # the revision of the deletion


def test_delete_missing() -> None:
    store = make()
    with pytest.raises(NotFound):
        store.prepare([Op("delete", svc("nope"))])
    assert store.prepare([Op("delete", svc("nope"), missing_ok=True)]).results[0].result == "notfound"


def owned_by(obj: Obj, owner: Obj) -> Obj:
    ref = {"apiVersion": "v1", "kind": owner["kind"], "name": owner["metadata"]["name"]}
    ref["uid"] = owner["metadata"]["uid"]
    return {**obj, "metadata": {**obj["metadata"], "ownerReferences": [ref]}}


def test_delete_cascades_through_owner_references() -> None:
    store = make()
    [gw] = write(store, Op("create", {"kind": "Gateway", "metadata": {"name": "wp", "namespace": "default"}}))
    deploy: Obj = {"kind": "Deployment", "metadata": {"name": "wp", "namespace": "default"}, "spec": {}}
    [dep] = write(store, Op("create", owned_by(deploy, gw.object)))
    write(store, Op("create", owned_by(svc("wp"), gw.object)))
    pod: Obj = {"kind": "Pod", "metadata": {"name": "wp-1", "namespace": "default"}}
    write(store, Op("create", owned_by(pod, dep.object)))
    write(store, Op("create", svc("unrelated")))
    prepared = store.prepare([Op("delete", {"kind": "Gateway", "metadata": {"name": "wp"}})])
    deleted = [object_key(e.object) for e in prepared.events]
    assert deleted[0] == ("Gateway", "default", "wp")
    assert set(deleted) == {
        ("Gateway", "default", "wp"),
        ("Deployment", "default", "wp"),
        ("Service", "default", "wp"),
        ("Pod", "default", "wp-1"),
    }
    assert [e.revision for e in prepared.events] == [6, 7, 8, 9]
    assert all(e.type == DELETED for e in prepared.events)
    store.commit(prepared)
    assert list(store.objects) == [("Service", "default", "unrelated")]


def test_deleting_a_namespace_deletes_its_contents() -> None:
    store = make()
    write(store, Op("create", ns("demo")), Op("create", svc("a", "demo")), Op("create", svc("b", "default")))
    write(store, Op("delete", ns("demo")))
    assert list(store.objects) == [("Service", "default", "b")]


def test_identity_checks() -> None:
    store = make()
    with pytest.raises(BadRequest, match="name"):
        store.prepare([Op("create", {"kind": "Service", "metadata": {}})])
    with pytest.raises(BadRequest, match="kind"):
        store.prepare([Op("create", {"kind": "no/slash", "metadata": {"name": "x"}})])
    with pytest.raises(BadRequest, match="not a valid name"):
        store.prepare([Op("create", svc("a/b"))])


def test_list_filters_and_sorts() -> None:
    store = make()
    write(store, Op("create", svc("b")), Op("create", svc("a", "other")), Op("create", ns("demo")))
    assert [o["metadata"]["name"] for o in store.list_objects(["Service"])] == ["b", "a"]
    assert [o["metadata"]["name"] for o in store.list_objects(["Service"], "other")] == ["a"]
    assert len(store.list_objects()) == 3


def test_events_since_and_gone() -> None:
    store = make(history=5)
    for i in range(8):
        write(store, Op("create", svc(f"s{i}")))
    assert store.history_floor == 3
    assert [e.revision for e in store.events_since(3)] == [4, 5, 6, 7, 8]
    assert [e.revision for e in store.events_since(6)] == [7, 8]
    assert store.events_since(8) == []
    with pytest.raises(Gone):
        store.events_since(2)
    with pytest.raises(Gone):
        store.events_since(9)  # from the future: the store lost data or was replaced; relist
    write(store, Op("create", ns("demo")))
    assert [e.object["kind"] for e in store.events_since(6, ["Namespace"])] == ["Namespace"]


def test_load_seeds_history_from_the_log_tail() -> None:
    source = make()
    for i in range(4):
        write(source, Op("create", svc(f"s{i}")))
    events = source.events_since(2)
    store = make()
    store.load(4, source.objects.values(), events)
    assert store.history_floor == 2
    assert [e.revision for e in store.events_since(2)] == [3, 4]
    # without a consistent tail, history starts at the loaded revision
    store.load(4, source.objects.values(), events[:1])
    assert store.history_floor == 4


def test_parse_ops() -> None:
    ops = parse_ops({"operations": [{"op": "delete", "object": svc("a"), "missingOk": True}]})
    assert ops == [Op("delete", svc("a"), missing_ok=True)]
    with pytest.raises(BadRequest) as info:
        parse_ops({"operations": [{"op": "apply", "object": svc("a")}, {"op": "frob", "object": {}}]})
    assert info.value.index == 1
    with pytest.raises(BadRequest):
        parse_ops([])


def test_apply_without_replicas_keeps_the_live_count_an_autoscaler_set() -> None:
    store = make()
    deployment: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
    }
    write(store, Op("create", {**deployment, "spec": {**deployment["spec"], "replicas": 4}}))
    write(store, Op("apply", {**deployment, "spec": {**deployment["spec"], "template": {"x": 1}}}))
    stored = store.get(("Deployment", "default", "web"))
    assert stored is not None and stored["spec"]["replicas"] == 4 and stored["spec"]["template"] == {"x": 1}
    write(store, Op("apply", {**deployment, "spec": {**deployment["spec"], "replicas": 2}}))  # control
    stored = store.get(("Deployment", "default", "web"))
    assert stored is not None and stored["spec"]["replicas"] == 2
