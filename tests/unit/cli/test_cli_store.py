"""``ambit apply / delete / get / label`` against a real store server (kubectl's habits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_harness import CLUSTER, ThreadedStore, ambit, ok
from click.testing import CliRunner

from ambit.cli import cli

SAMPLES = Path(__file__).parents[3].parent / "shared" / "samples" / "istio"

BROKEN = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: fine
---
apiVersion: v1
kind: Service
metadata:
  name: broken
spec:
  selector:
    app: broken
  ports:
  - port: "abc"
"""

VALID = """\
apiVersion: v1
kind: Service
metadata:
  name: valid
  labels:
    app: valid
spec:
  selector:
    app: valid
  ports:
  - port: 80
    name: http
"""


def needs_samples() -> None:
    if not SAMPLES.is_dir():
        pytest.skip(
            f"the Istio samples are not at {SAMPLES} (expected ../shared/samples/istio beside the repo)"
        )


# -- apply -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("store")
def test_apply_every_istio_sample() -> None:
    needs_samples()
    files = sorted(SAMPLES.glob("*.yaml"))
    assert files
    for path in files:
        result = ok("apply", "-f", str(path))
        lines = result.stdout.splitlines()
        assert lines, path
        assert all(line.endswith((" created", " configured", " unchanged")) for line in lines), result.stdout
    again = ok("apply", "-f", str(SAMPLES))  # the directory: every file, one transaction
    assert all(line.endswith(" unchanged") for line in again.stdout.splitlines()), again.stdout
    assert "service/productpage unchanged" in again.stdout
    assert "deployment.apps/productpage-v1 unchanged" in again.stdout
    assert "httproute.gateway.networking.k8s.io/helloworld unchanged" in again.stdout
    services = ok("get", "svc").stdout
    assert services.splitlines()[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert "productpage" in services
    assert "9000/TCP,9001/TCP" in services  # tcp-echo


@pytest.mark.usefixtures("store")
def test_a_broken_file_is_refused_whole(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    valid = tmp_path / "valid.yaml"
    valid.write_text(VALID)
    for args in (["-f", str(valid), "-f", str(broken)], ["-f", str(tmp_path)]):
        result = ambit("apply", *args)
        assert result.exit_code != 0
        assert "broken.yaml" in result.stderr
        assert "Service/default/broken" in result.stderr
        assert "spec.ports[0].port" in result.stderr
        assert "Traceback" not in result.output
        assert result.stdout == ""
    for kind in ("svc", "sa"):
        empty = ok("get", kind)
        assert empty.stdout == ""
        assert empty.stderr.strip() == "No resources found in default namespace."


@pytest.mark.usefixtures("store")
def test_apply_reports_created_configured_unchanged_and_reads_stdin() -> None:
    assert ok("apply", "-f", "-", stdin=VALID).stdout == "service/valid created\n"
    assert ok("apply", "-f", "-", stdin=VALID).stdout == "service/valid unchanged\n"
    changed = VALID.replace("port: 80", "port: 81")
    assert ok("apply", "-f", "-", stdin=changed).stdout == "service/valid configured\n"
    assert "81/TCP" in ok("get", "svc", "valid").stdout


@pytest.mark.usefixtures("store")
def test_apply_with_a_namespace(tmp_path: Path) -> None:
    ok("apply", "-f", "-", "-n", "other", stdin=VALID)
    assert ok("get", "svc", "valid", "-n", "other", "-o", "name").stdout == "service/valid\n"
    elsewhere = VALID.replace("name: valid\n", "name: valid\n  namespace: third\n", 1)
    result = ambit("apply", "-f", "-", "-n", "other", stdin=elsewhere)
    assert result.exit_code == 1
    assert 'does not match the namespace "other"' in result.stderr


@pytest.mark.usefixtures("store")
def test_apply_errors() -> None:
    missing = ambit("apply", "-f", "/nonexistent/file.yaml")
    assert missing.exit_code == 1
    assert 'the path "/nonexistent/file.yaml" does not exist' in missing.stderr
    syntax = ambit("apply", "-f", "-", stdin="kind: [unclosed\n")
    assert syntax.exit_code == 1
    assert "STDIN" in syntax.stderr
    empty = ambit("apply", "-f", "-", stdin="")
    assert empty.exit_code == 1
    assert "no objects passed to apply" in empty.stderr
    unknown = ambit("apply", "-f", "-", stdin="apiVersion: x.io/v1\nkind: Widget\nmetadata:\n  name: w\n")
    assert unknown.exit_code == 0
    assert "widget.x.io/w created" in unknown.stdout
    assert 'kind "Widget" is not one ambit knows' in unknown.stderr


# -- get ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("store")
def test_get_formats_and_exit_codes() -> None:
    ok("apply", "-f", "-", stdin=VALID)
    ok("apply", "-f", "-", "-n", "other", stdin=VALID)
    table = ok("get", "services").stdout.splitlines()
    assert len(table) == 2
    name, kind, cluster_ip, external, ports = table[1].split()[:5]
    assert (name, kind, external, ports) == ("valid", "ClusterIP", "<none>", "80/TCP")
    assert cluster_ip.startswith("10.96."), "the store allocates a ClusterIP, as the API server does"
    assert ok("get", "SVC", "valid").stdout == ok("get", "service", "valid").stdout
    wide = ok("get", "svc", "-o", "wide").stdout
    assert "SELECTOR" in wide
    assert "app=valid" in wide
    everywhere = ok("get", "svc", "-A").stdout.splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert sorted(line.split()[0] for line in everywhere[1:]) == ["default", "other"]
    as_yaml = yaml.safe_load(ok("get", "svc", "valid", "-o", "yaml").stdout)
    assert as_yaml["kind"] == "Service"
    assert as_yaml["metadata"]["uid"]
    as_json = json.loads(ok("get", "svc", "-o", "json").stdout)
    assert as_json["kind"] == "List"
    assert [item["metadata"]["name"] for item in as_json["items"]] == ["valid"]
    assert ok("get", "svc/valid", "-o", "name").stdout == "service/valid\n"
    assert ok("get", "svc", "-l", "app=valid", "-o", "name").stdout == "service/valid\n"
    assert ok("get", "svc", "-l", "app=nope").stderr == "No resources found in default namespace.\n"
    labelled = ok("get", "svc", "--show-labels").stdout
    assert labelled.splitlines()[0].split()[-1] == "LABELS"
    assert "app=valid" in labelled
    namespaces = ok("get", "ns").stdout.splitlines()
    assert namespaces[0].split() == ["NAME", "STATUS", "AGE"]
    assert namespaces[1].split()[:2] == ["default", "Active"]
    assert ok("get", "pods").stderr == "No resources found in default namespace.\n"
    assert ok("get", "pods", "-A").stderr == "No resources found\n"
    missing = ambit("get", "pods", "nope")
    assert missing.exit_code == 1
    assert missing.stderr == 'Error from server (NotFound): pods "nope" not found\n'
    partly = ambit("get", "svc", "valid", "nope")
    assert partly.exit_code == 1
    assert "valid" in partly.stdout
    assert 'services "nope" not found' in partly.stderr
    both = ok("get", "svc,ns").stdout
    assert "service/valid" in both
    assert "namespace/default" in both
    assert "authorizationpolicies" in ambit("get", "ap", "x").stderr
    for command in (("get", "svc"), ("delete", "svc")):
        bad = ambit(*command, "-l", "a=b,")
        assert bad.exit_code == 1
        assert bad.stderr.startswith("Error from server (BadRequest): label selector"), bad.stderr


def test_an_unreachable_store_is_one_clear_line(run_dir: Path) -> None:
    result = ambit("get", "pods")
    assert result.exit_code == 1
    sock = run_dir / CLUSTER / "store.sock"
    assert result.stderr == (
        f"error: cannot reach the store of cluster '{CLUSTER}' at {sock}: is the cluster up? (ambit up)\n"
    )
    sock.parent.mkdir(parents=True)
    sock.write_text("")  # a stale socket file: nobody listening
    stale = ambit("apply", "-f", "-", stdin=VALID)
    assert stale.exit_code == 1
    assert "is the cluster up? (ambit up)" in stale.stderr
    assert "Traceback" not in stale.output


def test_store_socket_and_cluster_options(store: ThreadedStore) -> None:
    runner = CliRunner()
    by_socket = runner.invoke(
        cli, ["--cluster", "elsewhere", "get", "ns", "--store-socket", str(store.socket_path)]
    )
    assert by_socket.exit_code == 0, by_socket.output
    assert "default" in by_socket.stdout
    by_option = runner.invoke(cli, ["get", "ns", "--cluster", CLUSTER])
    assert by_option.exit_code == 0, by_option.output
    wrong = runner.invoke(cli, ["--cluster", "elsewhere", "get", "ns"])
    assert wrong.exit_code == 1
    assert "cluster 'elsewhere'" in wrong.stderr


# -- label -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("store")
def test_label_add_overwrite_remove() -> None:
    assert (
        ok("label", "ns", "default", "istio.io/dataplane-mode=ambient").stdout
        == "namespace/default labeled\n"
    )
    assert (
        ok("get", "ns", "-l", "istio.io/dataplane-mode=ambient", "-o", "name").stdout == "namespace/default\n"
    )
    refused = ambit("label", "namespace", "default", "istio.io/dataplane-mode=none")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "error: 'istio.io/dataplane-mode' already has a value (ambient), and --overwrite is false\n"
    )
    same = ok("label", "ns", "default", "istio.io/dataplane-mode=ambient")
    assert same.stdout == "namespace/default not labeled\n"
    assert ok("label", "ns", "default", "istio.io/dataplane-mode=none", "--overwrite").stdout.endswith(
        "labeled\n"
    )
    ok("apply", "-f", "-", stdin=VALID)
    assert ok("label", "svc/valid", "tier=web", "app-").stdout == "service/valid labeled\n"
    labels = json.loads(ok("get", "svc", "valid", "-o", "json").stdout)["metadata"]["labels"]
    assert labels == {"tier": "web"}
    removed = ok("label", "svc", "valid", "tier-", "ghost-")
    assert removed.stdout == "service/valid unlabeled\n"
    assert removed.stderr == 'label "ghost" not found.\n'
    missing = ambit("label", "pod", "nope", "a=b")
    assert missing.exit_code == 1
    assert missing.stderr == 'Error from server (NotFound): pods "nope" not found\n'
    for bad in ("=x", "a=b c", "a"):
        result = ambit("label", "svc", "valid", bad)
        assert result.exit_code == 1, bad
        assert result.stderr.startswith("error: invalid label"), result.stderr
    assert ambit("label", "svc", "valid").exit_code == 1


# -- delete ------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("store")
def test_delete_by_file_like_kubectl(tmp_path: Path) -> None:
    needs_samples()
    curl, httpbin = SAMPLES / "curl.yaml", SAMPLES / "httpbin.yaml"
    ok("apply", "-f", str(curl))
    result = ambit("delete", "-f", str(curl), "-f", str(httpbin))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        'serviceaccount "curl" deleted',
        'service "curl" deleted',
        'deployment.apps "curl" deleted',
    ]
    assert f'Error from server (NotFound): error when deleting "{httpbin}": services "httpbin" not found' in (
        result.stderr
    )
    assert ok("get", "deploy").stderr == "No resources found in default namespace.\n"
    assert ok("delete", "-f", str(curl), "--ignore-not-found").stdout == ""


@pytest.mark.usefixtures("store")
def test_delete_by_name_and_namespace_cascade() -> None:
    ok("apply", "-f", "-", stdin=VALID)
    assert ok("delete", "svc", "valid").stdout == 'service "valid" deleted\n'
    again = ambit("delete", "service", "valid")
    assert again.exit_code == 1
    assert again.stderr == 'Error from server (NotFound): services "valid" not found\n'
    ok("apply", "-f", "-", stdin="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n")
    ok("apply", "-f", "-", "-n", "demo", stdin=VALID)
    assert ok("delete", "ns", "demo").stdout == 'namespace "demo" deleted\n'
    assert ok("get", "svc", "-A").stderr == "No resources found\n"
    forbidden = ambit("delete", "ns", "default")
    assert forbidden.exit_code == 1
    assert "Error from server (Forbidden)" in forbidden.stderr
    ok("apply", "-f", "-", stdin=VALID)
    ok("apply", "-f", "-", stdin=VALID.replace("name: valid\n", "name: other\n", 1))
    assert ambit("delete", "svc").exit_code == 1  # no name, no --all
    assert sorted(ok("delete", "svc", "--all").stdout.splitlines()) == [
        'service "other" deleted',
        'service "valid" deleted',
    ]


# -- scale -------------------------------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: ambit/sample
"""


@pytest.mark.usefixtures("store")
def test_scale_a_deployment_like_kubectl() -> None:
    ok("apply", "-f", "-", stdin=DEPLOYMENT)
    assert ok("scale", "deployment", "web", "--replicas", "3").stdout == "deployment.apps/web scaled\n"
    assert json.loads(ok("get", "deploy", "web", "-o", "json").stdout)["spec"]["replicas"] == 3
    stale = ambit("scale", "deploy/web", "--replicas", "0", "--current-replicas", "2")
    assert (stale.exit_code, stale.stderr) == (1, "error: Expected replicas to be 2, was 3\n")
    assert json.loads(ok("get", "deploy", "web", "-o", "json").stdout)["spec"]["replicas"] == 3
    ok("scale", "deploy/web", "--replicas", "0", "--current-replicas", "3")
    assert json.loads(ok("get", "deploy", "web", "-o", "json").stdout)["spec"]["replicas"] == 0
    negative = ambit("scale", "deploy", "web", "--replicas", "-1")
    assert negative.exit_code == 1 and "greater than or equal to 0" in negative.stderr
    service = ambit("scale", "svc", "web", "--replicas", "1")
    assert service.exit_code == 1 and "cannot be scaled" in service.stderr
    missing = ambit("scale", "deploy", "nope", "--replicas", "1")
    assert (missing.exit_code, missing.stderr) == (
        1,
        'Error from server (NotFound): deployments "nope" not found\n',
    )


NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: node1
status:
  conditions:
  - type: Ready
    status: "True"
"""


@pytest.mark.usefixtures("store")
def test_cordon_and_uncordon_like_kubectl() -> None:
    ok("apply", "-f", "-", stdin=NODE)
    assert ok("cordon", "node1").stdout == "node/node1 cordoned\n"
    assert ok("cordon", "node1").stdout == "node/node1 already cordoned\n"
    assert json.loads(ok("get", "node", "node1", "-o", "json").stdout)["spec"]["unschedulable"] is True
    assert "Ready,SchedulingDisabled" in ok("get", "nodes").stdout
    assert ok("uncordon", "node1").stdout == "node/node1 uncordoned\n"
    assert ok("uncordon", "node1").stdout == "node/node1 already uncordoned\n"
    assert "SchedulingDisabled" not in ok("get", "nodes").stdout
    missing = ambit("cordon", "node9")
    assert (missing.exit_code, missing.stderr) == (
        1,
        'Error from server (NotFound): nodes "node9" not found\n',
    )
