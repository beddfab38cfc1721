"""``ambit rollout status|restart|undo|history`` and ``ambit get rs|hpa|vpa|pdb|deploy`` against a real
store server, as kubectl shows them.

There is no runtime here: the tests write the Deployment's and the ReplicaSets' status themselves, as the
deployment controller would, to make a rollout progress.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from cli_harness import ThreadedStore, ambit, ok

from ambit.store.client import StoreClient

Obj = dict[str, Any]


def on_store(store: ThreadedStore, work: Callable[[StoreClient], Any]) -> Any:
    """Run `work(client)` against the store from the test's thread (its own loop)."""

    async def main() -> Any:
        async with StoreClient(store.socket_path) as client:
            return await work(client)

    return asyncio.run(main())


def create(store: ThreadedStore, *objects: Obj) -> list[Obj]:
    async def work(client: StoreClient) -> list[Obj]:
        return [await client.create(obj) for obj in objects]

    result: list[Obj] = on_store(store, work)
    return result


def get(store: ThreadedStore, kind: str, name: str) -> Obj:
    async def work(client: StoreClient) -> Obj:
        return await client.get(kind, name, "default")

    result: Obj = on_store(store, work)
    return result


async def set_status(client: StoreClient, kind: str, name: str, status: Obj) -> Obj:
    """Write `status` as the controller does (its observedGeneration the object's generation)."""
    obj = await client.get(kind, name, "default")
    obj["status"] = {"observedGeneration": obj["metadata"]["generation"], **status}
    return await client.update(obj)


def write_status(store: ThreadedStore, kind: str, name: str, status: Obj) -> Obj:
    result: Obj = on_store(store, lambda client: set_status(client, kind, name, status))
    return result


def template(image: str, **labels: str) -> Obj:
    return {
        "metadata": {"labels": {"app": "web", **labels}},
        "spec": {"containers": [{"name": "web", "image": image}]},
    }


def deployment(replicas: int = 2, image: str = "ambit/sample:v1", **extra: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", **extra.pop("metadata", {})},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(image),
            **extra,
        },
    }


def replica_set(owner: Obj, name: str, revision: int, image: str, **annotations: str) -> Obj:
    hash_ = name.rsplit("-", 1)[-1]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"deployment.kubernetes.io/revision": str(revision), **annotations},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash_}},
            "template": template(image, **{"pod-template-hash": hash_}),
        },
    }


WAITING = 'Waiting for deployment "web" rollout to finish: '
DONE = 'deployment "web" successfully rolled out'
CAUSE = "kubernetes.io/change-cause"
COMPLETE = {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}


# -- rollout status ---------------------------------------------------------------------------------


def test_status_of_a_rolled_out_deployment_exits_0(store: ThreadedStore) -> None:
    create(store, deployment())
    write_status(store, "Deployment", "web", COMPLETE)
    for target in (("deployment/web",), ("deployment", "web"), ("deploy", "web"), ("deployments.apps/web",)):
        assert ok("rollout", "status", *target).stdout == DONE + "\n", target


def test_status_times_out_with_kubectls_error(store: ThreadedStore) -> None:
    create(store, deployment())
    write_status(store, "Deployment", "web", {**COMPLETE, "updatedReplicas": 1})
    started = time.monotonic()
    result = ambit("rollout", "status", "deploy/web", "--timeout", "1s")
    took = time.monotonic() - started
    assert result.exit_code == 1
    # the same line is printed once, however often it was polled
    assert result.stdout == WAITING + "1 out of 2 new replicas have been updated...\n"
    assert result.stderr == "error: timed out waiting for the condition\n"
    assert 1.0 <= took < 5.0, took
    bad = ambit("rollout", "status", "deploy/web", "--timeout", "5")
    assert bad.exit_code == 2 and 'time: invalid duration "5"' in bad.stderr


def test_status_without_watch_prints_the_current_line_once(store: ThreadedStore) -> None:
    create(store, deployment())
    write_status(store, "Deployment", "web", {**COMPLETE, "availableReplicas": 1})
    line = WAITING + "1 of 2 updated replicas are available...\n"
    for flag in ("--watch=false", "-w=false", "--no-watch"):
        result = ok("rollout", "status", "deploy/web", flag)
        assert result.stdout == line, flag


def test_status_waits_for_the_spec_to_be_observed(store: ThreadedStore) -> None:
    create(store, deployment())
    write_status(store, "Deployment", "web", {**COMPLETE, "observedGeneration": 0})
    result = ok("rollout", "status", "deploy/web", "--watch=false")
    assert result.stdout == "Waiting for deployment spec update to be observed...\n"


def test_status_reports_an_exceeded_progress_deadline(store: ThreadedStore) -> None:
    create(store, deployment())
    progressing = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "web-abc" has timed out progressing.',
    }
    write_status(store, "Deployment", "web", {**COMPLETE, "updatedReplicas": 1, "conditions": [progressing]})
    result = ambit("rollout", "status", "deploy/web")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == 'error: deployment "web" exceeded its progress deadline\n'


def test_status_pinned_to_another_revision_fails(store: ThreadedStore) -> None:
    create(store, deployment(metadata={"annotations": {"deployment.kubernetes.io/revision": "2"}}))
    write_status(store, "Deployment", "web", COMPLETE)
    assert ok("rollout", "status", "deploy/web", "--revision", "2").stdout == DONE + "\n"
    result = ambit("rollout", "status", "deploy/web", "--revision", "3")
    assert result.exit_code == 1
    assert result.stderr == "error: desired revision (3) is different from the running revision (2)\n"


def test_status_follows_the_rollout_as_it_progresses(
    store: ThreadedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background writer moves the status along while `status` watches: every step is printed once, in
    order, and the command returns 0 as soon as the rollout is done."""
    from ambit.cli import rollout

    monkeypatch.setattr(rollout, "POLL_SECONDS", 0.05)
    create(store, deployment())
    steps = [
        {"replicas": 2, "updatedReplicas": 0, "readyReplicas": 2, "availableReplicas": 2},
        {"replicas": 3, "updatedReplicas": 1, "readyReplicas": 2, "availableReplicas": 2},
        {"replicas": 3, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2},
        {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1},
        COMPLETE,
        {**COMPLETE, "updatedReplicas": 0},  # never reached: the command has returned by then
    ]
    write_status(store, "Deployment", "web", steps[0])
    stop = threading.Event()

    def advance() -> None:
        for status in steps[1:]:
            if stop.wait(0.4):
                return
            write_status(store, "Deployment", "web", status)
            if status is COMPLETE:
                return

    writer = threading.Thread(target=advance, daemon=True)
    writer.start()
    try:
        result = ambit("rollout", "status", "deployment", "web", "--timeout", "30s")
    finally:
        stop.set()
        writer.join(10)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        WAITING + "0 out of 2 new replicas have been updated...",
        WAITING + "1 out of 2 new replicas have been updated...",
        WAITING + "1 old replicas are pending termination...",
        WAITING + "1 of 2 updated replicas are available...",
        DONE,
    ]


def test_status_of_a_deployment_deleted_while_watching(
    store: ThreadedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ambit.cli import rollout

    monkeypatch.setattr(rollout, "POLL_SECONDS", 0.05)
    create(store, deployment())
    write_status(store, "Deployment", "web", {**COMPLETE, "updatedReplicas": 0})

    async def delete(client: StoreClient) -> None:
        await asyncio.sleep(0.3)
        await client.delete("Deployment", "web", "default")

    deleter = threading.Thread(target=lambda: on_store(store, delete), daemon=True)
    deleter.start()
    result = ambit("rollout", "status", "deploy/web", "--timeout", "20s")
    deleter.join(10)
    assert (result.exit_code, result.stderr) == (1, "error: object has been deleted\n")
    assert result.stdout == WAITING + "0 out of 2 new replicas have been updated...\n"


@pytest.mark.usefixtures("store")
def test_rollout_arguments_and_missing_objects_like_kubectl() -> None:
    missing = ambit("rollout", "status", "deploy/nope")
    assert (missing.exit_code, missing.stderr) == (
        1,
        'Error from server (NotFound): deployments.apps "nope" not found\n',
    )
    for command, what in (
        ("status", "status viewer"),
        ("undo", "rollbacker"),
        ("history", "history viewer"),
        ("restart", "restarter"),
    ):
        other = ambit("rollout", command, "svc/web")
        assert (other.exit_code, other.stderr) == (
            1,
            f'error: no {what} has been implemented for "Service"\n',
        )
    assert ambit("rollout", "status").stderr == "error: required resource not specified\n"
    unknown = ambit("rollout", "undo", "widgets/web")
    assert unknown.stderr == 'error: the server doesn\'t have a resource type "widgets"\n'
    assert ambit("rollout", "restart", "deploy").exit_code == 1


# -- rollout restart --------------------------------------------------------------------------------


def test_restart_sets_the_template_annotation(store: ThreadedStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from ambit.cli import rollout

    create(store, deployment())
    before = get(store, "Deployment", "web")
    assert ok("rollout", "restart", "deployment", "web").stdout == "deployment.apps/web restarted\n"
    after = get(store, "Deployment", "web")
    stamp = after["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    restarted = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - restarted).total_seconds()) < 10
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1, "a spec change"
    assert after["spec"]["template"]["spec"] == before["spec"]["template"]["spec"]
    # a second restart within the same second changes nothing: kubectl refuses it
    monkeypatch.setattr(rollout, "rfc3339", lambda _now: "2030-01-01T00:00:00Z")
    ok("rollout", "restart", "deploy/web")
    again = ambit("rollout", "restart", "deploy/web")
    assert again.exit_code == 1
    assert again.stderr == (
        "error: failed to create patch for web: if restart has already been triggered within the past "
        "second, please wait before attempting to trigger another\n"
    )


def test_restart_of_a_paused_deployment_fails(store: ThreadedStore) -> None:
    create(store, deployment(paused=True))
    result = ambit("rollout", "restart", "deploy/web")
    assert result.exit_code == 1
    assert result.stderr == (
        'error: deployments.apps "web" can\'t restart paused deployment (run rollout resume first)\n'
    )
    annotations = get(store, "Deployment", "web")["spec"]["template"]["metadata"].get("annotations") or {}
    assert "kubectl.kubernetes.io/restartedAt" not in annotations


# -- rollout undo -----------------------------------------------------------------------------------


def with_history(store: ThreadedStore) -> Obj:
    """web at revision 2 (image v2), its ReplicaSets web-1111 (revision 1, v1) and web-2222 (revision 2,
    v2), and a ReplicaSet of another owner at revision 3 that must not count."""
    (web,) = create(
        store,
        deployment(
            image="ambit/sample:v2",
            metadata={"annotations": {"deployment.kubernetes.io/revision": "2", "team": "blue"}},
        ),
    )
    stranger = {**web, "metadata": {**web["metadata"], "name": "other", "uid": "not-web"}}
    create(
        store,
        replica_set(web, "web-1111", 1, "ambit/sample:v1", **{"kubernetes.io/change-cause": "first"}),
        replica_set(web, "web-2222", 2, "ambit/sample:v2"),
        {**replica_set(stranger, "other-3333", 3, "ambit/sample:v3")},
    )
    return web


def test_undo_restores_the_previous_revisions_template(store: ThreadedStore) -> None:
    with_history(store)
    assert ok("rollout", "undo", "deployment/web").stdout == "deployment.apps/web rolled back\n"
    web = get(store, "Deployment", "web")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "ambit/sample:v1"
    assert web["spec"]["template"]["metadata"]["labels"] == {"app": "web"}, "pod-template-hash removed"
    # kubectl replaces the annotations: the Deployment's own revision ones, then the ReplicaSet's others
    assert web["metadata"]["annotations"] == {
        "deployment.kubernetes.io/revision": "2",
        "kubernetes.io/change-cause": "first",
    }
    skipped = ok("rollout", "undo", "deploy", "web", "--to-revision", "1")
    assert skipped.stdout == (
        "deployment.apps/web skipped rollback (current template already matches revision 1)\n"
    )
    assert (
        ok("rollout", "undo", "deploy/web", "--to-revision", "2").stdout
        == "deployment.apps/web rolled back\n"
    )
    image = get(store, "Deployment", "web")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ambit/sample:v2"


def test_undo_to_a_missing_revision_fails_like_kubectl(store: ThreadedStore) -> None:
    with_history(store)
    before = get(store, "Deployment", "web")
    for revision in ("5", "3"):  # 3 belongs to another Deployment's ReplicaSet
        result = ambit("rollout", "undo", "deploy/web", "--to-revision", revision)
        assert result.exit_code == 1
        assert result.stderr == f"error: unable to find specified revision {revision} in history\n"
    assert (
        get(store, "Deployment", "web")["metadata"]["resourceVersion"]
        == before["metadata"]["resourceVersion"]
    )


def test_undo_without_history_fails_like_kubectl(store: ThreadedStore) -> None:
    create(store, deployment())
    result = ambit("rollout", "undo", "deploy/web")
    assert (result.exit_code, result.stderr) == (1, 'error: no rollout history found for deployment "web"\n')


# -- rollout history --------------------------------------------------------------------------------


def test_history_table_like_kubectl(store: ThreadedStore) -> None:
    web = with_history(store)
    result = ok("rollout", "history", "deployment/web")
    assert (
        result.stdout == "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         first\n2         <none>\n\n"
    )
    # by revision, not by name; the column as wide as the widest cell plus two (kubectl's tabwriter)
    create(store, replica_set(web, "web-0000", 123456789012, "ambit/sample:v0", **{CAUSE: "big"}))
    assert ok("rollout", "history", "deploy", "web").stdout.splitlines()[1:] == [
        "REVISION      CHANGE-CAUSE",
        "1             first",
        "2             <none>",
        "123456789012  big",
        "",
    ]


def test_history_of_one_revision_is_its_pod_template(store: ThreadedStore) -> None:
    with_history(store)
    result = ok("rollout", "history", "deploy/web", "--revision", "1")
    header, _, body = result.stdout.partition("\n")
    assert header == "deployment.apps/web with revision #1"
    shown = yaml.safe_load(body)
    assert shown["spec"]["containers"] == [{"name": "web", "image": "ambit/sample:v1"}]
    assert shown["metadata"]["labels"] == {"app": "web", "pod-template-hash": "1111"}
    assert shown["metadata"]["annotations"] == {"kubernetes.io/change-cause": "first"}
    missing = ambit("rollout", "history", "deploy/web", "--revision", "3")
    assert (missing.exit_code, missing.stderr) == (1, "error: unable to find the specified revision\n")


def test_history_without_replica_sets(store: ThreadedStore) -> None:
    create(store, deployment())
    assert (
        ok("rollout", "history", "deploy/web").stdout == "deployment.apps/web \nNo rollout history found.\n"
    )


# -- get rs, hpa, vpa, pdb, deploy ------------------------------------------------------------------


def cells(line: str) -> list[str]:
    """A table row's cells: separated by at least two spaces (TARGETS holds single spaces)."""
    return re.split(r"\s{2,}", line.strip())


def without_age(text: str, age_at: int) -> list[list[str]]:
    rows = [cells(line) for line in text.splitlines()]
    assert rows[0][age_at] == "AGE"
    for row in rows[1:]:
        assert re.fullmatch(r"\d+s", row[age_at]), row
    return [row[:age_at] + row[age_at + 1 :] for row in rows]


def test_get_deployments_reads_the_status_counts(store: ThreadedStore) -> None:
    """READY, UP-TO-DATE and AVAILABLE are the Deployment's status (there are no pods at all here)."""
    create(store, deployment(replicas=3))
    write_status(
        store,
        "Deployment",
        "web",
        {"replicas": 4, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 1},
    )
    assert without_age(ok("get", "deploy").stdout, 4) == [
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE"],
        ["web", "2/3", "3", "1"],
    ]
    wide = ok("get", "deployments", "-o", "wide").stdout.splitlines()
    assert cells(wide[0])[5:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert cells(wide[1])[5:] == ["web", "ambit/sample:v1", "app=web"]


def test_get_replicasets(store: ThreadedStore) -> None:
    web = with_history(store)
    write_status(store, "ReplicaSet", "web-2222", {"replicas": 3, "readyReplicas": 1})
    on_store(store, lambda c: scale_rs(c, "web-2222", 2))
    assert without_age(ok("get", "rs").stdout, 4) == [
        ["NAME", "DESIRED", "CURRENT", "READY"],
        ["other-3333", "0", "0", "0"],
        ["web-1111", "0", "0", "0"],
        ["web-2222", "2", "3", "1"],
    ]
    wide = ok("get", "replicaset", "web-2222", "-o", "wide").stdout.splitlines()
    assert cells(wide[0]) == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert cells(wide[1])[5:] == ["web", "ambit/sample:v2", "app=web,pod-template-hash=2222"]
    assert web["metadata"]["uid"]


async def scale_rs(client: StoreClient, name: str, replicas: int) -> None:
    obj = await client.get("ReplicaSet", name, "default")
    obj["spec"]["replicas"] = replicas
    await client.update(obj)


def test_get_replicaset_selector_with_expressions() -> None:
    """kubectl's FormatLabelSelector: labels and expressions together, by key, values sorted."""
    from ambit.store.display import table

    rs = {
        "kind": "ReplicaSet",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {
                "matchLabels": {"tier": "web"},
                "matchExpressions": [
                    {"key": "track", "operator": "In", "values": ["stable", "canary"]},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                    {"key": "zone", "operator": "Exists"},
                    {"key": "beta", "operator": "DoesNotExist"},
                ],
            }
        },
    }
    row = table([rs], kind="ReplicaSet", wide=True).splitlines()[1]
    assert cells(row)[-1] == "!beta,env notin (dev),tier=web,track in (canary,stable),zone"
    assert cells(row)[1:4] == ["1", "0", "0"], "DESIRED defaults to 1, as the API does"


HPA = """\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
status:
  currentReplicas: 3
  desiredReplicas: 3
  currentMetrics:
  - type: Resource
    resource: {name: cpu, current: {averageUtilization: 45, averageValue: 90m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: waypoint
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: waypoint}
  maxReplicas: 4
  metrics:
  - type: Pods
    pods:
      metric: {name: istio_requests_per_second}
      target: {type: AverageValue, averageValue: "100"}
"""


@pytest.mark.usefixtures("store")
def test_get_horizontal_pod_autoscalers() -> None:
    ok("apply", "-f", "-", stdin=HPA)
    assert without_age(ok("get", "hpa").stdout, 6) == [
        ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS"],
        ["waypoint", "Deployment/waypoint", "<unknown>/100", "<unset>", "4", "0"],
        ["web", "Deployment/web", "cpu: 45%/50%", "2", "10", "3"],
    ]
    both = [cells(line) for line in ok("get", "hpa,deploy").stdout.splitlines()]
    assert ["horizontalpodautoscaler.autoscaling/web", "Deployment/web", "cpu: 45%/50%"] in [
        row[:3] for row in both
    ], "TARGETS with several kinds at once too"


VPA = """\
apiVersion: autoscaling.k8s.io/v1
kind: VerticalPodAutoscaler
metadata:
  name: web
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  updatePolicy: {updateMode: "Off"}
status:
  recommendation:
    containerRecommendations:
    - containerName: web
      target: {cpu: 25m, memory: "262144k"}
    - containerName: sidecar
      target: {cpu: 1, memory: 1Gi}
  conditions:
  - {type: RecommendationProvided, status: "True"}
---
apiVersion: autoscaling.k8s.io/v1
kind: VerticalPodAutoscaler
metadata:
  name: fresh
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: fresh}
  updatePolicy: {updateMode: "Off"}
"""


@pytest.mark.usefixtures("store")
def test_get_vertical_pod_autoscalers() -> None:
    ok("apply", "-f", "-", stdin=VPA)
    lines = ok("get", "vpa").stdout.splitlines()
    assert lines[0].split() == ["NAME", "MODE", "CPU", "MEM", "PROVIDED", "AGE"]
    header = lines[0]
    columns = {name: header.index(name) for name in ("MODE", "CPU", "MEM", "PROVIDED", "AGE")}

    def at(line: str, column: str) -> str:
        return line[columns[column] :].split(" ", maxsplit=1)[0] if len(line) > columns[column] else ""

    fresh, web = lines[1:]
    assert [at(web, c) for c in ("MODE", "CPU", "MEM", "PROVIDED")] == ["Off", "25m", "262144k", "True"]
    # nothing recommended yet: empty cells, as kubectl shows a CRD's absent printer columns
    assert fresh.startswith("fresh")
    assert [at(fresh, c) for c in ("MODE", "CPU", "MEM", "PROVIDED")] == ["Off", "", "", ""]
    assert re.fullmatch(r"\d+s", at(fresh, "AGE"))


PDB = """\
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: waypoint
spec:
  maxUnavailable: 25%
  selector: {matchLabels: {app: waypoint}}
status:
  disruptionsAllowed: 1
  currentHealthy: 2
  desiredHealthy: 1
  expectedPods: 2
"""


@pytest.mark.usefixtures("store")
def test_get_pod_disruption_budgets() -> None:
    ok("apply", "-f", "-", stdin=PDB)
    assert without_age(ok("get", "pdb").stdout, 4) == [
        ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS"],
        ["waypoint", "N/A", "25%", "1"],
        ["web", "1", "N/A", "0"],
    ]
