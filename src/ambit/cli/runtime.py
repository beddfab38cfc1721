"""`ambit up`, `down`, `status`, `exec`, `logs`, `stop`/`start`/`kill`/`restart` (component control)
and the hidden `runtime-daemon`: the local runtime."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import click

from ambit.cli import GlobalOptions
from ambit.cli.go_duration import SECOND, GoDuration
from ambit.cli.nodes import NODE
from ambit.resources.objects import is_ready
from ambit.store import StoreClient
from ambit.store.types import Op, StoreError


def _cluster(ctx: click.Context) -> str:
    options = ctx.find_object(GlobalOptions)
    return options.cluster if options is not None else "ambit"


async def _wait_ready(cluster: str, timeout_s: float, items: list[dict[str, Any]]) -> None:
    from ambit.runtime import cluster as rt
    from ambit.runtime.deployment_revisions import RolloutError, rollout_status
    from ambit.runtime.layout import Layout

    layout = Layout(cluster)
    deadline = time.monotonic() + timeout_s
    while not layout.store_socket.exists():
        if not rt.daemon_alive(cluster):
            raise click.ClickException(f"the runtime daemon died; see {layout.log('daemon')}")
        if time.monotonic() > deadline:
            raise click.ClickException("timed out waiting for the store")
        await asyncio.sleep(0.1)
    async with StoreClient(layout.store_socket) as client:
        while True:
            try:
                await client.health()
                break
            except StoreError:
                if time.monotonic() > deadline:
                    raise click.ClickException("timed out waiting for the store") from None
                await asyncio.sleep(0.1)
        if items:
            try:
                await client.transaction([Op("apply", obj) for obj in items])
            except StoreError as exc:
                raise click.ClickException(f"applying the manifests failed: {exc}") from exc
        waiting: list[str] = []
        while time.monotonic() < deadline:
            if not rt.daemon_alive(cluster):
                raise click.ClickException(f"the runtime daemon died; see {layout.log('daemon')}")
            listed = await client.list(["Pod", "Deployment"])
            pods = [o for o in listed.items if o["kind"] == "Pod"]
            waiting = [
                f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods if not is_ready(p)
            ]
            for dep in (o for o in listed.items if o["kind"] == "Deployment"):
                try:  # what `kubectl rollout status` waits for (its ReplicaSet's pods ready and available)
                    _, done = rollout_status(dep)
                except RolloutError:
                    done = False
                if not done:
                    waiting.append(f"deployment {dep['metadata']['namespace']}/{dep['metadata']['name']}")
            if not waiting and pods:
                return
            await asyncio.sleep(0.3)
        raise click.ClickException(f"timed out after {timeout_s:.0f}s; not ready: {', '.join(waiting)}")


@click.command("up")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 64))
@click.option("--zones", default="", help="Comma-separated zones, assigned to nodes round-robin.")
@click.option("-f", "--filename", "files", multiple=True, help="Manifests to apply once the store is up.")
@click.option("--no-ztunnel", is_flag=True, help="Do not run ztunnels (ambient pods then stay Pending).")
@click.option(
    "--timeout", default=120.0, show_default=True, help="Seconds to wait for every pod to be ready."
)
@click.option(
    "--node-grace",
    default=8.0,
    show_default=True,
    type=click.FloatRange(min=2.0),
    help="Seconds without a node heartbeat before the node is NotReady (Kubernetes' default is 50).",
)
@click.option(
    "--workload-cert-ttl",
    type=GoDuration(),
    default=None,
    help="Lifetime of workload certificates (Go duration: 60s, 10m, 24h; 10s to 90 days). Proxies "
    "refresh them at half-life, so 60s means a new certificate every ~30s. Default: the CA's, 24h.",
)
@click.option(
    "--outage-tolerance",
    type=GoDuration(),
    default=None,
    help="How long a CA outage the running workloads must survive: workload certificates then live "
    "at least twice this (the default TTL is raised to it). A --workload-cert-ttl shorter than twice "
    "the tolerance is refused, not raised.",
)
@click.option(
    "--test-fault-endpoints",
    is_flag=True,
    help="For chaos tests only (ambit chaos ca-down): the control-plane replicas serve "
    "POST /debug/fault/ca, which makes their CA refuse every request. Never on a real cluster.",
)
@click.pass_context
def up(
    ctx: click.Context,
    nodes: int,
    zones: str,
    files: tuple[str, ...],
    no_ztunnel: bool,
    timeout: float,
    node_grace: float,
    workload_cert_ttl: int | None,
    outage_tolerance: int | None,
    test_fault_endpoints: bool,
) -> None:
    """Build the cluster, start its runtime daemon, and return once every pod is ready.

    Workload certificates: by default the CA signs them for 24h and proxies refresh them at half-life,
    so running workloads survive a CA outage of about 12h. --outage-tolerance T guarantees T (every
    certificate lives at least 2T); --workload-cert-ttl sets the lifetime itself (and must then be at
    least 2T). Both are recorded in the cluster's config and passed to every control-plane replica.
    """
    from ambit.cli.manifests import read_manifests
    from ambit.runtime import cluster as rt

    name = _cluster(ctx)
    items = [obj for _, obj in read_manifests(files)] if files else []
    options = rt.UpOptions(
        nodes=nodes,
        zones=[z for z in zones.split(",") if z],
        ztunnel=not no_ztunnel,
        node_grace=node_grace,
        workload_cert_ttl=None if workload_cert_ttl is None else workload_cert_ttl / SECOND,
        outage_tolerance=None if outage_tolerance is None else outage_tolerance / SECOND,
        test_fault_endpoints=test_fault_endpoints,
    )
    try:
        rt.prepare(name, options)
    except (rt.ClusterError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:
        rt.down(name)
        raise click.ClickException(f"creating cluster {name} failed: {exc}") from exc
    pid = rt.start_daemon(name)
    asyncio.run(_wait_ready(name, timeout, items))
    click.echo(f"cluster {name} is up: {nodes} nodes, runtime daemon pid {pid}")


@click.command("down")
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop every process and remove every namespace, rule and file of the cluster."""
    from ambit.runtime import cluster as rt

    name = _cluster(ctx)
    report = rt.down(name)
    click.echo(
        f"cluster {name} is down: {len(report.stopped)} processes stopped, "
        f"{len(report.deleted_netns)} namespaces deleted"
    )


@click.command("status")
@click.pass_context
def status(ctx: click.Context) -> None:
    """Nodes, pods, ztunnels and control-plane replicas, with health."""
    from ambit.runtime.handle import ClusterHandle

    name = _cluster(ctx)
    cluster = ClusterHandle(name, timeout=5.0)
    if not cluster.exists():
        raise click.ClickException(f"cluster {name} does not exist")
    click.echo(f"cluster {name}: daemon {'running' if cluster.daemon_alive() else 'NOT RUNNING'}")
    try:
        report = cluster.status()
    except StoreError as exc:
        if "store" in cluster.held():
            raise click.ClickException("the store is stopped (ambit start store)") from exc
        raise click.ClickException(f"store unreachable: {exc}") from exc
    for line in report.lines():
        click.echo(line)


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("pod", required=False)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--node", type=NODE, help="Run in a node's namespace (2 or node2) instead of a pod's.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(
    ctx: click.Context, pod: str | None, namespace: str, node: str | None, command: tuple[str, ...]
) -> None:
    """Run COMMAND inside a pod's (or a node's) network namespace: ambit exec POD -- CMD..."""
    from ambit.runtime.handle import ClusterHandle, HandleError

    cluster = ClusterHandle(_cluster(ctx), timeout=5.0)
    if node:
        netns = cluster.node_netns(node)
        command = (pod, *command) if pod else command  # no POD with --node: the first word is the command
    elif pod:
        try:
            netns = cluster.pod_net(pod, namespace).netns
        except StoreError as exc:
            raise click.ClickException(f"pod {namespace}/{pod}: {exc}") from exc
        except HandleError as exc:
            raise click.ClickException(str(exc)) from exc
    else:
        raise click.UsageError("give a POD or --node")
    argv = ["ip", "netns", "exec", netns, *command]
    os.execvp(argv[0], argv)


@click.command("logs")
@click.argument("component")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.pass_context
def logs(ctx: click.Context, component: str, namespace: str) -> None:
    """Print the log of a COMPONENT (daemon, ztunnel-node1) or a POD."""
    from ambit.runtime.layout import SYSTEM_NAMESPACE, Layout

    layout = Layout(_cluster(ctx))
    candidates = [layout.log(component), *sorted(layout.logs_dir.glob(f"pod-{namespace}-{component}-*.log"))]
    if namespace == "default":
        candidates += sorted(layout.logs_dir.glob(f"pod-{SYSTEM_NAMESPACE}-{component}-*.log"))
    found = [p for p in candidates if p.exists()]
    if not found:
        raise click.ClickException(f"no log for {component}")
    for path in found:
        click.echo(path.read_text(errors="replace"), nl=False)


def _control(
    ctx: click.Context, op: str, component: str, name: str | None, node: str | None, ns: str | None
) -> None:
    from ambit.runtime import control
    from ambit.runtime.handle import ClusterHandle

    if component == "store" and (name or node):
        raise click.UsageError("store takes no NAME or --node")
    try:
        message = ClusterHandle(_cluster(ctx)).command(op, component, name, node=node, namespace=ns)
    except control.ControlError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(message)


def _control_command(op: str, help_text: str) -> click.Command:
    @click.command(op, help=help_text)
    @click.argument("component", type=click.Choice(["ztunnel", "controlplane", "store", "pod"]))
    @click.argument("name", required=False)
    @click.option(
        "--node", type=NODE, help="The node, 2 or node2 (ztunnel: required; controlplane: the replica on it)."
    )
    @click.option("-n", "--namespace", default=None, help="The pod's namespace (default: default).")
    @click.pass_context
    def command(
        ctx: click.Context, component: str, name: str | None, node: str | None, namespace: str | None
    ) -> None:
        _control(ctx, op, component, name, node, namespace)

    return command


_COMPONENTS_HELP = (
    "COMPONENT is ztunnel (--node N), controlplane (every replica, or NAME / the one on --node), "
    "store, or pod NAME [-n NS]."
)
stop = _control_command(
    "stop", "SIGTERM a component and hold it down until `ambit start`. " + _COMPONENTS_HELP
)
start = _control_command("start", "Start a stopped component again. " + _COMPONENTS_HELP)
kill = _control_command(
    "kill", "SIGKILL a component (the supervisor restarts it, as a crash). " + _COMPONENTS_HELP
)
restart = _control_command(
    "restart",
    "Restart a component; a ztunnel gracefully: the new one starts and takes the node's pods "
    "before the old one drains. " + _COMPONENTS_HELP,
)


@click.command("runtime-daemon", hidden=True)
@click.pass_context
def runtime_daemon(ctx: click.Context) -> None:
    """The cluster's runtime daemon (started by `ambit up`)."""
    from ambit.runtime import daemon

    daemon.main(_cluster(ctx))
