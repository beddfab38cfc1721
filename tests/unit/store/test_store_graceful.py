"""Graceful Pod deletion in the store: marked with deletionTimestamp, not removed, as kube-apiserver does."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from ambit.store.core import ObjectStore, parse_ops
from ambit.store.types import DELETED, MODIFIED, BadRequest, Obj, Op

NOW = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)


def make() -> tuple[ObjectStore, list[datetime]]:
    uids = (f"uid-{i}" for i in itertools.count(1))
    clock = [NOW]
    store = ObjectStore(
        clock=lambda: "2026-01-01T00:00:00Z", new_uid=lambda: next(uids), wall=lambda: clock[0]
    )
    return store, clock


def pod(name: str, *, node: str | None = "node1", grace: int | None = None, **meta: Any) -> Obj:
    spec: Obj = {"containers": [{"name": "c", "image": "x"}]}
    if node:
        spec["nodeName"] = node
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", **meta},
        "spec": spec,
    }


def write(store: ObjectStore, *ops: Op) -> list[Any]:
    prepared = store.prepare(list(ops))
    store.commit(prepared)
    return prepared.results


def delete_op(name: str, kind: str = "Pod", grace: int | None = None) -> Op:
    return Op(
        "delete", {"kind": kind, "metadata": {"name": name, "namespace": "default"}}, grace_period=grace
    )


def test_a_bound_pod_is_marked_with_its_own_grace_period_not_removed() -> None:
    store, _ = make()
    write(store, Op("create", pod("web", grace=12)))
    [result] = write(store, delete_op("web"))
    stored = store.get(("Pod", "default", "web"))
    assert stored is not None
    assert stored["metadata"]["deletionTimestamp"] == "2026-01-01T00:00:12Z"
    assert stored["metadata"]["deletionGracePeriodSeconds"] == 12
    assert result.result == "deleted" and result.object == stored
    assert store.events_since(1)[-1].type == MODIFIED


def test_the_default_grace_period_is_30_seconds() -> None:
    store, _ = make()
    write(store, Op("create", pod("web")))
    write(store, delete_op("web"))
    stored = store.get(("Pod", "default", "web"))
    assert stored is not None and stored["metadata"]["deletionGracePeriodSeconds"] == 30


def test_unbound_pods_and_grace_zero_are_removed_at_once() -> None:
    store, _ = make()
    write(store, Op("create", pod("pending", node=None)), Op("create", pod("forced")))
    write(store, delete_op("pending"), delete_op("forced", grace=0))
    assert store.get(("Pod", "default", "pending")) is None
    assert store.get(("Pod", "default", "forced")) is None
    assert [e.type for e in store.events_since(2)] == [DELETED, DELETED]


def test_a_second_delete_may_shorten_the_grace_period_never_lengthen_it() -> None:
    store, clock = make()
    write(store, Op("create", pod("web", grace=30)))
    write(store, delete_op("web"))
    revision = store.revision
    write(store, delete_op("web", grace=60))  # later than the pending deadline: nothing changes
    assert store.revision == revision
    write(store, delete_op("web", grace=5))
    stored = store.get(("Pod", "default", "web"))
    assert stored is not None and stored["metadata"]["deletionTimestamp"] == "2026-01-01T00:00:05Z"
    clock[0] = datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)
    write(store, delete_op("web", grace=0))  # the kubelet's final delete
    assert store.get(("Pod", "default", "web")) is None


def test_writes_cannot_set_change_or_clear_the_deletion_fields() -> None:
    store, _ = make()
    write(store, Op("create", pod("early", deletionTimestamp="2020-01-01T00:00:00Z")))
    created = store.get(("Pod", "default", "early"))
    assert created is not None and "deletionTimestamp" not in created["metadata"]
    write(store, Op("create", pod("web")))
    write(store, delete_op("web"))
    write(store, Op("apply", pod("web", labels={"a": "b"})))  # a manifest without the fields
    stored = store.get(("Pod", "default", "web"))
    assert stored is not None
    assert stored["metadata"]["labels"] == {"a": "b"}
    assert stored["metadata"]["deletionTimestamp"] == "2026-01-01T00:00:30Z"


def test_owned_pods_of_a_deleted_owner_terminate_gracefully_a_namespace_s_go_at_once() -> None:
    store, _ = make()
    [owner] = write(
        store,
        Op(
            "create",
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {"name": "rs", "namespace": "default"},
            },
        ),
    )
    ref = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "rs",
        "uid": owner.object["metadata"]["uid"],
    }
    write(
        store,
        Op("create", pod("a", ownerReferences=[ref])),
        Op("create", pod("b", node=None, ownerReferences=[ref])),
    )
    write(store, delete_op("rs", kind="ReplicaSet"))
    assert store.get(("ReplicaSet", "default", "rs")) is None
    kept = store.get(("Pod", "default", "a"))
    assert kept is not None and kept["metadata"]["deletionTimestamp"]
    assert store.get(("Pod", "default", "b")) is None  # never bound: removed with its owner
    ns_store, _ = make()
    write(ns_store, Op("create", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}))
    write(ns_store, Op("create", {**pod("x"), "metadata": {"name": "x", "namespace": "apps"}}))
    write(ns_store, Op("delete", {"kind": "Namespace", "metadata": {"name": "apps"}}))
    assert ns_store.get(("Pod", "apps", "x")) is None


def test_parse_ops_reads_and_checks_the_grace_period() -> None:
    [op] = parse_ops({"operations": [{"op": "delete", "object": {"kind": "Pod"}, "gracePeriodSeconds": 3}]})
    assert op.grace_period == 3
    assert Op("delete", {}, grace_period=3).to_json()["gracePeriodSeconds"] == 3
    for bad in (-1, "3", True):
        with pytest.raises(BadRequest, match="gracePeriodSeconds"):
            parse_ops(
                {"operations": [{"op": "delete", "object": {"kind": "Pod"}, "gracePeriodSeconds": bad}]}
            )


def test_a_shorter_grace_counts_from_when_the_deletion_began() -> None:
    store, clock = make()
    write(store, Op("create", pod("web", grace=30)))
    write(store, delete_op("web"))  # at 00:00, deadline 00:30
    clock[0] = datetime(2026, 1, 1, 0, 0, 15, tzinfo=UTC)
    write(store, delete_op("web", grace=20))  # 15 s in: 20 < 30, so 00:20, not 00:35
    stored = store.get(("Pod", "default", "web"))
    assert stored is not None
    assert stored["metadata"]["deletionTimestamp"] == "2026-01-01T00:00:20Z"
    assert stored["metadata"]["deletionGracePeriodSeconds"] == 20
