"""Versions: content hashes, identical on every replica, changing only with the resource they name."""

from __future__ import annotations

import copy
import random
import re
from pathlib import Path
from typing import Any

import pytest
from translate_builders import authz, namespace, peer_authn, pod, service, store, waypoint

from ambit.control.translate import ClusterState, TranslationResult, translate
from ambit.model.version import canonical_json
from ambit.model.workload import PortMapping, Workload
from ambit.resources import parse_manifests

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared/samples/istio"


def cluster() -> list[dict[str, Any]]:
    objs = [
        namespace("shop", **{"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}),
        waypoint("waypoint", "shop"),
        service("web", "shop", selector={"app": "web"}, cluster_ip="10.96.0.20"),
        service("db", "shop", selector={"app": "db"}, cluster_ip="10.96.0.21"),
        authz("allow-web", "shop", {"selector": {"matchLabels": {"app": "web"}}, "rules": [{}]}),
        authz(
            "deny-all",
            "istio-system",
            {"action": "DENY", "rules": [{"from": [{"source": {"notNamespaces": ["shop"]}}]}]},
        ),
        peer_authn("default", "istio-system", "STRICT"),
    ]
    objs += [pod(f"web-{i}", "shop", labels={"app": "web"}, ip=f"10.244.1.{10 + i}") for i in range(3)]
    objs += [pod(f"db-{i}", "shop", labels={"app": "db"}, ip=f"10.244.2.{10 + i}") for i in range(2)]
    return store(*objs)


def changed(a: TranslationResult, b: TranslationResult) -> set[str]:
    names = set(a.versions) | set(b.versions)
    return {n for n in names if a.versions.get(n) != b.versions.get(n)}


def test_every_resource_has_a_version() -> None:
    result = translate(cluster())
    expected = (
        {f"wl/{uid}" for uid in result.workloads}
        | {f"svc/{key}" for key in result.services}
        | {f"ap/{key}" for key in result.policies}
        | {f"l7/{key}" for key in result.l7_policies}
    )
    assert set(result.versions) == expected
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in result.versions.values())
    assert "svc/shop/web.shop.svc.cluster.local" in result.versions
    assert "ap/shop/allow-web" in result.versions


def test_same_input_same_versions_in_any_order() -> None:
    objs = cluster()
    first = translate(objs)
    shuffled = copy.deepcopy(objs)
    random.Random(7).shuffle(shuffled)
    second = translate(shuffled)
    assert first.versions == second.versions
    assert first == second
    assert translate(ClusterState.from_objects(objs)).versions == first.versions


def test_metadata_noise_does_not_change_versions() -> None:
    objs = cluster()
    noisy = copy.deepcopy(objs)
    for i, obj in enumerate(noisy):
        obj["metadata"]["resourceVersion"] = str(1000 + i)
        obj["metadata"]["creationTimestamp"] = "2025-06-01T00:00:00Z"
        obj["metadata"]["generation"] = 3
    assert translate(noisy).versions == translate(objs).versions


def _edit_pod(objs: list[dict[str, Any]], name: str, edit: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(objs)
    for obj in out:
        if obj["kind"] == "Pod" and obj["metadata"]["name"] == name:
            edit(obj)
    return out


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda p: p["status"]["conditions"][0].update(status="False"), id="readiness"),
        pytest.param(lambda p: p["metadata"]["labels"].update(version="v2"), id="label"),
        pytest.param(lambda p: p["spec"].update(nodeName="node-9"), id="node"),
        pytest.param(lambda p: p["status"].update(podIP="10.244.9.9"), id="ip"),
    ],
)
def test_changing_one_pod_changes_exactly_one_version(edit: Any) -> None:
    objs = cluster()
    before = translate(objs)
    after = translate(_edit_pod(objs, "web-1", edit))
    assert changed(before, after) == {"wl/uid-shop-web-1"}


def test_pod_leaving_a_service_changes_only_its_workload() -> None:
    objs = cluster()
    before = translate(objs)
    after = translate(_edit_pod(objs, "web-1", lambda p: p["metadata"]["labels"].update(app="other")))
    assert changed(before, after) == {"wl/uid-shop-web-1"}
    assert after.workloads["uid-shop-web-1"].services == ()


def test_changing_a_service_changes_its_version_and_its_endpoints_only() -> None:
    objs = cluster()
    before = translate(objs)
    edited = copy.deepcopy(objs)
    for obj in edited:
        if obj["kind"] == "Service" and obj["metadata"]["name"] == "db":
            obj["spec"]["ports"][0]["targetPort"] = 9999
    after = translate(edited)
    assert changed(before, after) == {
        "svc/shop/db.shop.svc.cluster.local",
        "wl/uid-shop-db-0",
        "wl/uid-shop-db-1",
    }
    assert after.workloads["uid-shop-db-0"].ports_for("shop/db.shop.svc.cluster.local") == (
        PortMapping(80, 9999),
    )


def test_changing_a_policy_changes_only_that_policy() -> None:
    objs = cluster()
    before = translate(objs)
    edited = copy.deepcopy(objs)
    for obj in edited:
        if obj["kind"] == "AuthorizationPolicy" and obj["metadata"]["name"] == "deny-all":
            obj["spec"]["rules"][0]["from"][0]["source"]["notNamespaces"] = ["shop", "ops"]
    assert changed(before, translate(edited)) == {"ap/istio-system/deny-all"}


def test_removing_a_pod_removes_its_version() -> None:
    objs = cluster()
    before = translate(objs)
    after = translate([o for o in objs if o["metadata"]["name"] != "db-1"])
    assert changed(before, after) == {"wl/uid-shop-db-1"}
    assert "wl/uid-shop-db-1" not in after.versions


def test_canonical_json_is_stable() -> None:
    w = Workload(uid="u", name="n", namespace="ns", service_account="sa", node="x", addresses=("10.0.0.1",))
    text = canonical_json(w)
    assert text == canonical_json(Workload(**{f: getattr(w, f) for f in w.__dataclass_fields__}))
    assert '"tunnel_protocol":"NONE"' in text
    assert " " not in text


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="samples not present")
def test_istio_samples_translate() -> None:
    objs = [o for f in sorted(SAMPLES.glob("*.yaml")) for o in parse_manifests(f.read_text(), f.name)]
    result = translate(objs)
    assert "default/productpage.default.svc.cluster.local" in result.services
    assert result.services["default/tcp-echo.default.svc.cluster.local"].ports[0].app_protocol == "TCP"
    assert result.warnings == ()
