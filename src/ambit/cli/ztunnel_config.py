"""`ambit ztunnel-config workloads|services|policies|certificates|connections|ejections`: what ztunnels
believe.

Modelled on ``istioctl ztunnel-config``. Each node's ztunnel is asked for its ``/config_dump`` (admin
port ``127.0.0.1:15000`` inside the node's network namespace; :mod:`ambit.runtime.admin_client`) and
one section is shown as a table, or as the raw JSON with ``-o json``. ``--node N`` asks one node;
without it every node of the cluster is asked and the table gets a leading column naming the node
whose ztunnel answered (``NODE``; ``ZTUNNEL`` for workloads, which have their own ``NODE`` column).

A node whose ztunnel cannot be read is reported on stderr; the command fails only if no node answered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click

from ambit.cli import GlobalOptions
from ambit.cli.nodes import NODE
from ambit.cli.tables import format_table
from ambit.model.policy import Scope
from ambit.model.workload import HealthStatus, Service, TunnelProtocol, WaypointRef
from ambit.proxy.config_dump import ConfigDump

Dump = Mapping[str, Any]  # /config_dump as it crossed the wire (JSON); read as a ConfigDump
Rows = tuple[list[str], list[list[str]]]

SECTIONS = ("workloads", "services", "policies", "certificates", "connections", "ejections")


def _waypoint(ref: WaypointRef | None) -> str:
    if ref is None or not ref.hostname:
        return "None"
    return ref.hostname.split(".", 1)[0]


def workload_rows(dump: ConfigDump, _now: datetime) -> Rows:
    headers = ["NAMESPACE", "POD NAME", "ADDRESS", "NODE", "WAYPOINT", "PROTOCOL"]
    rows = [
        [
            w.namespace,
            w.name,
            ",".join(w.addresses) or "None",
            w.node or "None",
            _waypoint(w.waypoint),
            "HBONE" if w.tunnel_protocol is TunnelProtocol.HBONE else "TCP",
        ]
        for w in dump.workloads.values()
    ]
    return headers, sorted(rows)


def _service_key(key: str, service: Service) -> str:
    if service.namespace and service.hostname:
        return service.key
    return key


def service_rows(dump: ConfigDump, _now: datetime) -> Rows:
    headers = ["NAMESPACE", "SERVICE NAME", "SERVICE VIP", "WAYPOINT", "ENDPOINTS"]
    workloads = list(dump.workloads.values())
    rows = []
    for key, svc in dump.services.items():
        skey = _service_key(key, svc)
        endpoints = [w for w in workloads if any(entry[0] == skey for entry in w.services)]
        healthy = sum(1 for w in endpoints if w.status is HealthStatus.HEALTHY)
        rows.append(
            [
                svc.namespace,
                svc.name,
                ",".join(svc.vips) or "None",
                _waypoint(svc.waypoint),
                f"{healthy}/{len(endpoints)}",
            ]
        )
    return headers, sorted(rows)


_SCOPES = {Scope.GLOBAL: "Global", Scope.NAMESPACE: "Namespace", Scope.WORKLOAD_SELECTOR: "WorkloadSelector"}


def policy_rows(dump: ConfigDump, _now: datetime) -> Rows:
    headers = ["NAMESPACE", "POLICY NAME", "ACTION", "SCOPE"]
    rows = []
    for p in dump.policies.values():
        action = p.action.value.capitalize()
        if p.dry_run:
            action += " (dry-run)"
        rows.append([p.namespace, p.name, action, _SCOPES[p.scope]])
    return headers, sorted(rows)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def certificate_rows(dump: ConfigDump, now: datetime) -> Rows:
    headers = ["CERTIFICATE NAME", "TYPE", "STATUS", "VALID", "NOT AFTER"]
    rows = []
    for name, info in dump.certificates.items():
        not_after = _aware(info.not_after)
        valid = not_after > now
        shown = not_after.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append([name, "Leaf", "Available" if valid else "Expired", str(valid).lower(), shown])
    # identities of served pods that have no certificate (yet): being fetched, or the CA is away
    pending = {p.identity for p in dump.pods.values() if p.identity}
    rows += [[ident, "Leaf", "Unavailable", "false", "-"] for ident in pending - set(dump.certificates)]
    return headers, sorted(rows)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60}m"
    return f"{total // 86400}d{total % 86400 // 3600}h"


def connection_rows(dump: ConfigDump, _now: datetime) -> Rows:
    headers = [
        "WORKLOAD",
        "DIRECTION",
        "PROTOCOL",
        "SOURCE",
        "DESTINATION",
        "SOURCE IDENTITY",
        "DESTINATION IDENTITY",
        "AGE",
        "BYTES IN/OUT",
    ]
    rows = [
        [
            c.workload or c.workload_uid or "-",
            c.direction,
            c.protocol,
            c.source,
            c.destination,
            c.source_identity or "None",
            c.destination_identity or "None",
            _age(c.age_seconds),
            f"{c.bytes_received}/{c.bytes_sent}",
        ]
        for c in dump.connections
    ]
    return headers, rows


def ejection_rows(dump: ConfigDump, _now: datetime) -> Rows:
    headers = ["REPLICA", "UID", "EJECTED FOR", "FAILURES", "LAST FAILURE"]
    rows = [[e.name or "-", e.uid, f"{e.remaining:.1f}s", str(e.failures), e.reason] for e in dump.ejections]
    return headers, rows


ROWS: dict[str, Callable[[ConfigDump, datetime], Rows]] = {
    "workloads": workload_rows,
    "services": service_rows,
    "policies": policy_rows,
    "certificates": certificate_rows,
    "connections": connection_rows,
    "ejections": ejection_rows,
}


def render(
    section: str, dumps: Sequence[tuple[str, Dump]], *, node_column: bool, now: datetime | None = None
) -> str:
    """The table of ``section`` for the dumps of the nodes that answered (``(node, dump)``).

    Raises ValueError if a dump is not a config dump (:meth:`ConfigDump.from_json`).
    """
    now = now if now is not None else datetime.now(UTC)
    headers: list[str] = []
    rows: list[list[str]] = []
    for node, dump in dumps:
        headers, node_rows = ROWS[section](ConfigDump.from_json(dump), now)
        rows += [[node, *row] for row in node_rows] if node_column else node_rows
    if not headers:
        headers, _ = ROWS[section](ConfigDump(), now)
    if node_column:
        headers = ["ZTUNNEL" if section == "workloads" else "NODE", *headers]
    return format_table(headers, rows)


def render_json(section: str, dumps: Sequence[tuple[str, Dump]], *, per_node: bool) -> str:
    """The raw ``section`` of the dump; keyed by node when several nodes were asked."""
    if per_node:
        return json.dumps({node: dump.get(section) for node, dump in dumps}, indent=2, sort_keys=True)
    [(_, dump)] = dumps
    return json.dumps(dump.get(section), indent=2, sort_keys=True)


# -- the commands ----------------------------------------------------------------------------------


def _fetch(cluster: str, node: str) -> Dump:
    from ambit.runtime.admin_client import node_config_dump

    return node_config_dump(cluster, node)


def _nodes(cluster: str) -> list[str]:
    from ambit.runtime.admin_client import cluster_nodes

    return cluster_nodes(cluster)


def show(ctx: click.Context, section: str, node: str | None, output: str) -> None:
    from ambit.runtime.admin_client import AdminError

    options = ctx.find_object(GlobalOptions)
    cluster = options.cluster if options is not None else "ambit"
    try:
        nodes = [node] if node else _nodes(cluster)
    except AdminError as exc:
        raise click.ClickException(str(exc)) from exc
    dumps: list[tuple[str, Dump]] = []
    for name in nodes:
        try:
            dump = _fetch(cluster, name)
            ConfigDump.from_json(dump)  # read it once here, so a dump that does not read is this node's error
        except AdminError as exc:
            click.echo(f"{name}: {exc}", err=True)
        except ValueError as exc:
            click.echo(f"{name}: /config_dump does not read as a config dump: {exc}", err=True)
        else:
            dumps.append((name, dump))
    if not dumps:
        raise click.ClickException(f"no ztunnel answered (asked {', '.join(nodes) or 'no nodes'})")
    if output == "json":
        click.echo(render_json(section, dumps, per_node=node is None))
    else:
        click.echo(render(section, dumps, node_column=node is None), nl=False)


@click.group("ztunnel-config")
def ztunnel_config() -> None:
    """What each node's ztunnel believes (like istioctl ztunnel-config), from its /config_dump."""


def _subcommand(section: str, help_text: str) -> None:
    @click.command(section, help=help_text)
    @click.option("--node", type=NODE, help="Ask only this node's ztunnel (2 or node2); default: every node.")
    @click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="A table, or the raw JSON of this section of /config_dump.",
    )
    @click.pass_context
    def command(ctx: click.Context, node: str | None, output: str) -> None:
        show(ctx, section, node, output)

    ztunnel_config.add_command(command)


_subcommand("workloads", "Workloads: namespace, pod, address, node, waypoint, protocol (HBONE or TCP).")
_subcommand("services", "Services: namespace, name, VIPs, waypoint, endpoints (healthy/total).")
_subcommand("policies", "Authorization policies: namespace, name, action, scope.")
_subcommand("certificates", "Workload certificates: SPIFFE id, status, expiry.")
_subcommand("connections", "Live inbound connections: peers, identities, age, bytes.")
_subcommand("ejections", "Waypoint replicas this ztunnel tries last after they refused or timed out.")
