"""`ambit waypoint generate|apply|list|status|delete|run`: declare and inspect waypoints, as istioctl does.

A waypoint is a Gateway of class ``istio-waypoint`` with one ``mesh`` listener on 15008 (HBONE); the
control plane's waypoint controller turns it into a Deployment, Service, ServiceAccount and PDB and
writes its status (:mod:`ambit.control.waypoints`). These commands write and read that Gateway in the
cluster's store:

* ``generate`` prints the Gateway; ``apply`` writes it, with ``--enroll-namespace`` labels the
  namespace ``istio.io/use-waypoint=<name>`` (``--overwrite`` replaces another waypoint there), and
  with ``--wait`` returns once the Gateway is ``Programmed``;
* ``list`` shows each waypoint's traffic type, ready replicas and ``Programmed``; ``status`` its
  conditions; ``delete`` removes waypoint Gateways (their objects go with them: owner cascade);
* ``run`` is the waypoint itself (:mod:`ambit.waypoint.app`): the command the controller's Deployment
  runs in each waypoint pod.

The pure parts (:func:`waypoint_gateway`, :func:`list_rows`, :func:`status_rows`) are tested alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ambit.cli.store_session import fail, run_on_store, store_options, store_target
from ambit.cli.tables import format_table
from ambit.model.workload import HBONE_PORT
from ambit.resources.objects import (
    DATAPLANE_MODE,
    DATAPLANE_MODE_AMBIENT,
    GATEWAY_NAME_LABEL,
    USE_WAYPOINT,
    USE_WAYPOINT_NAMESPACE,
    WAYPOINT_AUTOSCALE_MAX,
    WAYPOINT_FOR,
    WAYPOINT_REPLICAS,
    WAYPOINT_TRAFFIC_TYPES,
    condition,
    is_ready,
    is_waypoint,
    labels,
    mapping,
    name_of,
    namespace_or_default,
    text,
    waypoint_for,
)
from ambit.store.client import StoreClient
from ambit.store.labels import set_labels
from ambit.store.types import NotFound, Op

Obj = dict[str, Any]

DEFAULT_NAME = "waypoint"
WAYPOINT_CLASS = "istio-waypoint"
_POLL_SECONDS = 0.2


# -- pure ------------------------------------------------------------------------------------------


def waypoint_gateway(
    name: str, namespace: str, traffic_for: str, replicas: int | None = None, autoscale: int | None = None
) -> Obj:
    """The Gateway ``istioctl waypoint generate`` would print (plus ``ambit.dev/replicas`` and
    ``ambit.dev/autoscale-max-replicas`` if given)."""
    metadata: Obj = {"name": name, "namespace": namespace, "labels": {WAYPOINT_FOR: traffic_for}}
    if replicas is not None:
        metadata["annotations"] = {WAYPOINT_REPLICAS: str(replicas)}
    if autoscale is not None:
        metadata.setdefault("annotations", {})[WAYPOINT_AUTOSCALE_MAX] = str(autoscale)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": metadata,
        "spec": {
            "gatewayClassName": WAYPOINT_CLASS,
            "listeners": [{"name": "mesh", "port": HBONE_PORT, "protocol": "HBONE"}],
        },
    }


def list_rows(
    gateways: Sequence[Obj],
    classes: Sequence[Obj],
    deployments: Sequence[Obj],
    pods: Sequence[Obj],
    *,
    with_namespace: bool,
) -> list[list[str]]:
    """Rows of ``waypoint list``: [NAMESPACE,] NAME, TRAFFIC TYPE, READY (pods/replicas), PROGRAMMED."""
    by_class = {name_of(c): c for c in classes}
    replicas = {
        (namespace_or_default(d), name_of(d)): mapping(d, "spec").get("replicas") for d in deployments
    }
    rows = []
    for gw in sorted(gateways, key=lambda g: (namespace_or_default(g), name_of(g))):
        if not is_waypoint(gw):
            continue
        ns, name = namespace_or_default(gw), name_of(gw)
        ready = sum(
            1
            for p in pods
            if namespace_or_default(p) == ns and labels(p).get(GATEWAY_NAME_LABEL) == name and is_ready(p)
        )
        wanted = replicas.get((ns, name))
        programmed = condition(gw, "Programmed")
        row = [
            name,
            waypoint_for(gw, by_class.get(text(mapping(gw, "spec"), "gatewayClassName"))),
            f"{ready}/{'-' if wanted is None else wanted}",
            str(programmed.get("status", "Unknown")) if programmed else "Unknown",
        ]
        rows.append([ns, *row] if with_namespace else row)
    return rows


def status_rows(gateways: Sequence[Obj]) -> list[list[str]]:
    """Rows of ``waypoint status``: NAMESPACE, NAME, STATUS, TYPE, REASON, MESSAGE per condition."""
    rows = []
    for gw in sorted(gateways, key=lambda g: (namespace_or_default(g), name_of(g))):
        if not is_waypoint(gw):
            continue
        conditions = [c for c in mapping(gw, "status").get("conditions") or [] if isinstance(c, dict)]
        if not conditions:
            rows.append([namespace_or_default(gw), name_of(gw), "Unknown", "-", "-", "no status written yet"])
        for cond in conditions:
            rows.append(
                [
                    namespace_or_default(gw),
                    name_of(gw),
                    str(cond.get("status", "")),
                    str(cond.get("type", "")),
                    str(cond.get("reason", "")),
                    str(cond.get("message", "")),
                ]
            )
    return rows


# -- commands --------------------------------------------------------------------------------------


def _namespace_option(func: Any) -> Any:
    return click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")(func)


def _gateway_options(func: Any) -> Any:
    func = click.option(
        "--autoscale",
        "autoscale",
        type=click.IntRange(min=2),
        metavar="MAX",
        help="Autoscale the waypoint 2..MAX replicas on requests/s (an HPA; annotation "
        "ambit.dev/autoscale-max-replicas).",
    )(func)
    func = click.option(
        "--replicas",
        type=click.IntRange(min=0),
        help="Replicas of the waypoint Deployment (annotation ambit.dev/replicas; default 2).",
    )(func)
    func = click.option(
        "--for",
        "traffic_for",
        type=click.Choice(sorted(WAYPOINT_TRAFFIC_TYPES)),
        default="service",
        show_default=True,
        help="Which traffic the waypoint handles (label istio.io/waypoint-for).",
    )(func)
    func = click.option("--name", default=DEFAULT_NAME, show_default=True, help="The waypoint's name.")(func)
    return _namespace_option(func)


@click.group("waypoint")
def waypoint() -> None:
    """Declare and inspect waypoints (L7 proxies): generate, apply, list, status, delete."""


@waypoint.command("generate")
@_gateway_options
def generate(
    *, namespace: str, name: str, traffic_for: str, replicas: int | None, autoscale: int | None
) -> None:
    """Print the waypoint Gateway as YAML."""
    import yaml

    click.echo(
        yaml.safe_dump(waypoint_gateway(name, namespace, traffic_for, replicas, autoscale), sort_keys=False),
        nl=False,
    )


@waypoint.command("apply")
@_gateway_options
@click.option("--enroll-namespace", is_flag=True, help="Label the namespace istio.io/use-waypoint=NAME.")
@click.option("--overwrite", is_flag=True, help="With --enroll-namespace: replace another waypoint there.")
@click.option("--wait", is_flag=True, help="Return once the waypoint is Programmed.")
@click.option(
    "--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0), help="--wait's limit (s)."
)
@store_options
def apply(
    *,
    namespace: str,
    name: str,
    traffic_for: str,
    replicas: int | None,
    autoscale: int | None,
    enroll_namespace: bool,
    overwrite: bool,
    wait: bool,
    timeout: float,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Create or update a waypoint (a Gateway of class istio-waypoint) in a namespace.

    \b
      ambit waypoint apply -n default --enroll-namespace --wait
      ambit waypoint apply -n shop --name shop-wp --for all --replicas 3
    """
    target = store_target(cluster_override, store_socket)
    gateway = waypoint_gateway(name, namespace, traffic_for, replicas, autoscale)

    async def work(client: StoreClient) -> list[str]:
        notes = []
        try:
            ns_obj = await client.get("Namespace", namespace)
        except NotFound:
            fail(f'Error from server (NotFound): namespaces "{namespace}" not found')
        ns_labels = labels(ns_obj)
        if enroll_namespace:
            current = ns_labels.get(USE_WAYPOINT)
            if current not in (None, name) and not overwrite:
                fail(
                    f"error: namespace {namespace} already uses waypoint {current!r} ({USE_WAYPOINT}); "
                    "give --overwrite to replace it"
                )
        await client.transaction([Op("apply", gateway)])
        lines = [f"waypoint {namespace}/{name} applied"]
        if enroll_namespace:
            await set_labels(
                client, "Namespace", namespace, {USE_WAYPOINT: name, USE_WAYPOINT_NAMESPACE: None}
            )
            lines.append(f'namespace {namespace} labeled with "{USE_WAYPOINT}: {name}"')
        if ns_labels.get(DATAPLANE_MODE) != DATAPLANE_MODE_AMBIENT:
            notes.append(
                f"warning: namespace {namespace} is not labelled {DATAPLANE_MODE}={DATAPLANE_MODE_AMBIENT}: "
                "its pods are enrolled only if they carry that label themselves"
            )
        if wait:
            await _wait_programmed(client, name, namespace, timeout)
            lines.append(f"waypoint {namespace}/{name} programmed")
        return notes + lines

    for line in run_on_store(target, work):
        click.echo(line, err=line.startswith("warning:"))


async def _wait_programmed(client: StoreClient, name: str, namespace: str, seconds: float) -> None:
    last = ["no status written yet (is the control plane running?)"]

    async def poll() -> None:
        while True:
            programmed = condition(await client.get("Gateway", name, namespace), "Programmed")
            if programmed is not None:
                if programmed.get("status") == "True":
                    return
                last[0] = f"{programmed.get('reason')}: {programmed.get('message')}"
            await asyncio.sleep(_POLL_SECONDS)

    try:
        async with asyncio.timeout(seconds):
            await poll()
    except TimeoutError:
        fail(f"error: waypoint {namespace}/{name} not programmed after {seconds:g}s: {last[0]}")


@waypoint.command("list")
@_namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="Waypoints of every namespace.")
@store_options
def list_waypoints(
    *, namespace: str, all_namespaces: bool, cluster_override: str | None, store_socket: Path | None
) -> None:
    """List waypoints: traffic type, ready replicas, Programmed."""
    target = store_target(cluster_override, store_socket)
    scope = None if all_namespaces else namespace

    async def work(client: StoreClient) -> list[list[str]]:
        gateways = (await client.list(["Gateway"], scope)).items
        classes = (await client.list(["GatewayClass"])).items
        deployments = (await client.list(["Deployment"], scope)).items
        pods = (await client.list(["Pod"], scope)).items
        return list_rows(gateways, classes, deployments, pods, with_namespace=all_namespaces)

    rows = run_on_store(target, work)
    if not rows:
        click.echo("No waypoints found.", err=True)
        return
    headers = ["NAME", "TRAFFIC TYPE", "READY", "PROGRAMMED"]
    click.echo(format_table(["NAMESPACE", *headers] if all_namespaces else headers, rows), nl=False)


@waypoint.command("status")
@_namespace_option
@click.option("--name", help="Only this waypoint.")
@store_options
def status(
    *, namespace: str, name: str | None, cluster_override: str | None, store_socket: Path | None
) -> None:
    """Show the waypoints' conditions (Accepted, Programmed) with reason and message."""
    target = store_target(cluster_override, store_socket)

    async def work(client: StoreClient) -> list[Obj]:
        if name is None:
            return (await client.list(["Gateway"], namespace)).items
        try:
            return [await client.get("Gateway", name, namespace)]
        except NotFound:
            fail(f'error: waypoint "{name}" not found in namespace {namespace}')

    rows = status_rows(run_on_store(target, work))
    if not rows:
        click.echo("No waypoints found.", err=True)
        return
    click.echo(format_table(["NAMESPACE", "NAME", "STATUS", "TYPE", "REASON", "MESSAGE"], rows), nl=False)


@waypoint.command("delete")
@click.argument("names", nargs=-1)
@_namespace_option
@click.option("--all", "delete_all", is_flag=True, help="Every waypoint of the namespace.")
@store_options
def delete(
    *,
    names: tuple[str, ...],
    namespace: str,
    delete_all: bool,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Delete waypoints by name (default: 'waypoint'), or --all of them; their objects go too."""
    if names and delete_all:
        fail("error: give waypoint names or --all, not both")
    target = store_target(cluster_override, store_socket)

    async def work(client: StoreClient) -> list[str]:
        if delete_all:
            chosen = [g for g in (await client.list(["Gateway"], namespace)).items if is_waypoint(g)]
        else:
            chosen = []
            for wanted in names or (DEFAULT_NAME,):
                try:
                    gw = await client.get("Gateway", wanted, namespace)
                except NotFound:
                    fail(f'error: waypoint "{wanted}" not found in namespace {namespace}')
                if not is_waypoint(gw):
                    fail(f"error: Gateway {namespace}/{wanted} is not a waypoint (class {WAYPOINT_CLASS})")
                chosen.append(gw)
        if not chosen:
            return []
        refs = [{"kind": "Gateway", "metadata": {"name": name_of(g), "namespace": namespace}} for g in chosen]
        await client.transaction([Op("delete", ref, missing_ok=True) for ref in refs])
        return [f"waypoint {namespace}/{name_of(g)} deleted" for g in chosen]

    lines = run_on_store(target, work)
    if not lines:
        click.echo(f"No waypoints found in namespace {namespace}.", err=True)
    for line in lines:
        click.echo(line)


@waypoint.command("run")
@click.option("--gateway", required=True, help="The waypoint Gateway this replica serves.")
@click.option("--namespace", required=True, help="The Gateway's namespace.")
@click.option("--service-account", help="The pod's service account (default: the Gateway's name).")
@click.option(
    "--control-plane",
    default="controlplane.ambit-system.svc:15012",
    show_default=True,
    help="xDS (mTLS with the waypoint's certificate).",
)
@click.option(
    "--ca-address",
    default="controlplane.ambit-system.svc:15013",
    show_default=True,
    help="The CA's token port (TLS; the pod token authenticates).",
)
@click.option("--token-file", envvar="AMBIT_TOKEN_FILE", required=True, type=click.Path(path_type=Path))
@click.option(
    "--trust-bundle", envvar="AMBIT_TRUST_BUNDLE_FILE", required=True, type=click.Path(path_type=Path)
)
@click.option("--pod-ip", envvar="POD_IP", required=True)
@click.option("--pod-name", envvar="POD_NAME", default="")
@click.option("--trust-domain", default="cluster.local", show_default=True)
@click.option("--drain-deadline", default=10.0, show_default=True, type=float)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    help="The last good config and certificate, for a restart with no control plane "
    "(default: cache/ beside the token file, in the pod's own directory).",
)
def run(
    *,
    gateway: str,
    namespace: str,
    service_account: str | None,
    control_plane: str,
    ca_address: str,
    token_file: Path,
    trust_bundle: Path,
    pod_ip: str,
    pod_name: str,
    trust_domain: str,
    drain_deadline: float,
    cache_dir: Path | None,
) -> None:
    """Run one waypoint replica until SIGTERM (drain) or SIGINT."""
    # Imported here: the rest of the CLI does not carry the proxy.
    import logging
    import signal

    import uvloop

    from ambit.proxy.control_plane import bootstrap_addresses
    from ambit.waypoint.app import WaypointApp, WaypointConfig

    config = WaypointConfig(
        gateway=gateway,
        namespace=namespace,
        service_account=service_account or gateway,
        pod_ip=pod_ip,
        pod_name=pod_name,
        token_file=token_file,
        trust_bundle_file=trust_bundle,
        xds_addresses=bootstrap_addresses([control_plane]),
        ca_addresses=bootstrap_addresses([ca_address]),
        trust_domain=trust_domain,
        drain_deadline=drain_deadline,
        cache_dir=cache_dir or Path(),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        app = WaypointApp(config)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await app.start()
            await stop.wait()
            await app.drain()
        finally:
            await app.close()

    uvloop.run(serve())
