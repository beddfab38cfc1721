"""The control plane's faults: ``controlplane-down`` (every replica stopped, a ztunnel restarted during
the outage) and ``ca-down`` (every replica's CA refuses certificates for a while, xDS serves on); both
end once the certificates that fell due during the outage are refreshed.

It needs a cluster started with ``ambit up --test-fault-endpoints``: only then do the replicas serve
``POST /debug/fault/ca`` on 15014 (``ambit.control.http``), reached here from the network namespace of
the node each replica runs on (as the kubelet reaches ``/debug/workload_sync``, so this plaintext never
crosses the fabric).

Timeline: ``state=refuse`` to every replica ("refusing"), ``plan.duration`` seconds, ``state=serve`` to
every replica ("restored", also sent if anything failed in between). The ztunnels' certificates are
read from their ``/config_dump`` (``certificates``: SPIFFE id → ``not_after``) once every replica
refuses. A certificate whose half-life fell before the restore was due for a refresh the CA refused:
the experiment then waits until every ztunnel holds, for each such identity it still serves, a
certificate newer than the one it held (none can have been signed during the outage), and ends then
("refreshed"). If no refresh fell due (the default 24 h certificates), it ends at the restore.

The half-life of a certificate is computed from its ``not_after`` and the lifetime the CA signs for in
this cluster (its config: ``workload_cert_ttl``, ``outage_tolerance``; a ztunnel asks for 24 h) with
the CA's own backdating rule (``ambit.control.ca_server.backdate``): the dump carries no
``not_before``. A certificate whose ``not_after`` fell inside the outage expired: it is counted and
marked ("certificate expired"), since the pods of that identity could not open mesh connections
until the refresh.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ambit.chaos.experiments import ExperimentError, FaultPlan, now, wait_until
from ambit.control.ca_server import WorkloadCertPolicy, backdate
from ambit.identity.ca import DEFAULT_TTL as CA_DEFAULT_TTL
from ambit.identity.secrets import DEFAULT_BACKOFF_MAX
from ambit.net.netns import Target, socket_in_netns
from ambit.reliability.flows import FaultEvents
from ambit.resources.objects import labels, name_of, node_name
from ambit.runtime import admin_client
from ambit.runtime.handle import ClusterHandle
from ambit.runtime.layout import SYSTEM_NAMESPACE, read_json
from ambit.xds.ca_client import DEFAULT_TTL as REQUESTED_TTL

CONTROL_PLANE_HTTP_PORT = 15014
FAULT_PATH = "/debug/fault/ca"
NEEDS_FLAG = (
    "ca-down needs the control plane's test fault endpoints, and cluster {cluster} was started "
    "without them: take it down and run `ambit --cluster {cluster} up --test-fault-endpoints` "
    "(chaos clusters only; add --workload-cert-ttl 60s to see the certificates refreshed)"
)


@dataclass(frozen=True, slots=True)
class Replica:
    """A control-plane replica: its pod, its IP, the netns of the node it runs on."""

    name: str
    ip: str
    node_netns: str


def replicas(handle: ClusterHandle) -> list[Replica]:
    """Every control-plane replica with an IP and a node."""
    found = [
        Replica(name_of(p), str(p["status"]["podIP"]), handle.node_netns(node_name(p)))
        for p in handle.pods(SYSTEM_NAMESPACE)
        if labels(p).get("app") == "controlplane"
        and (p.get("status") or {}).get("podIP")
        and node_name(p)
        and not p["metadata"].get("deletionTimestamp")
    ]
    return sorted(found, key=lambda r: r.name)


def http_post(
    netns: Target, address: tuple[str, int], path: str, form: str, *, timeout: float
) -> tuple[int, bytes]:
    """``POST path`` with a form body on ``host:port`` inside ``netns``; (status, body)."""
    host, port = address
    sock = socket_in_netns(netns, socket.AF_INET)
    with sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        body = form.encode("ascii")
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode("ascii") + body)
        raw = bytearray()
        while chunk := sock.recv(65536):
            raw += chunk
    return admin_client.parse_response(bytes(raw))


def set_state(handle: ClusterHandle, replica: Replica, state: str, timeout: float = 3.0) -> None:
    """Switch one replica's CA to ``state`` (refuse, serve); :class:`ExperimentError` if it did not."""
    try:
        status, body = http_post(
            replica.node_netns,
            (replica.ip, CONTROL_PLANE_HTTP_PORT),
            FAULT_PATH,
            f"state={state}",
            timeout=timeout,
        )
    except (OSError, admin_client.AdminError) as exc:
        raise ExperimentError(
            f"control-plane replica {replica.name} ({replica.ip}) unreachable: {exc}"
        ) from exc
    if status == 404:
        raise ExperimentError(NEEDS_FLAG.format(cluster=handle.name))
    answer: Any = None
    with contextlib.suppress(ValueError):
        answer = json.loads(body)
    if status != 200 or not isinstance(answer, dict) or answer.get("state") != state:
        raise ExperimentError(
            f"control-plane replica {replica.name} did not switch its CA to {state}: HTTP {status} "
            + body.decode(errors="replace")[:200]
        )


def workload_lifetime(config: Mapping[str, Any]) -> timedelta:
    """How long the CA of a cluster with this config signs a ztunnel's workload certificates for."""

    def seconds(key: str) -> timedelta | None:
        value = config.get(key)
        return None if value is None else timedelta(seconds=float(value))

    policy = WorkloadCertPolicy.resolve(seconds("workload_cert_ttl"), seconds("outage_tolerance"))
    return policy.lifetime(REQUESTED_TTL, CA_DEFAULT_TTL)


def refresh_at(not_after: datetime, lifetime: timedelta) -> datetime:
    """The half-life of a certificate signed for ``lifetime`` (the CA backdates it by ``backdate``)."""
    return not_after - (lifetime + backdate(lifetime)) / 2


def certificates(dump: Mapping[str, Any]) -> dict[str, datetime]:
    """SPIFFE id → ``not_after`` of every workload certificate in a ztunnel's config dump."""
    out: dict[str, datetime] = {}
    for identity, view in (dump.get("certificates") or {}).items():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            out[str(identity)] = datetime.fromisoformat(str(view["not_after"]))
    return out


def served_identities(dump: Mapping[str, Any]) -> set[str]:
    """The identities of the pods a ztunnel serves (a pod gone since needs no new certificate)."""
    return {
        str(p.get("identity"))
        for p in (dump.get("pods") or {}).values()
        if isinstance(p, dict) and p.get("state") in ("new", "serving")
    }


def refreshed(handle: ClusterHandle, node: str, due: Mapping[str, datetime]) -> bool:
    """``node``'s ztunnel holds a newer certificate than ``due`` names for each identity it serves."""
    dump = handle.ztunnel_config(node)
    held, served = certificates(dump), served_identities(dump)
    return all(
        identity in held and held[identity] > old for identity, old in due.items() if identity in served
    )


def ca_down(handle: ClusterHandle, plan: FaultPlan) -> FaultEvents:
    """Make every replica's CA refuse for ``plan.duration`` s, then serve again; end once every ztunnel
    holds a certificate issued after the outage for each one whose refresh fell due (else at the
    restore). Needs ``ambit up --test-fault-endpoints``."""
    config = read_json(handle.layout.config)
    if not config.get("test_fault_endpoints"):
        raise ExperimentError(NEEDS_FLAG.format(cluster=handle.name))
    targets = replicas(handle)
    if not targets:
        raise ExperimentError("the cluster has no control-plane replica with an IP")
    lifetime = workload_lifetime(config)
    marks: list[tuple[str, float]] = []
    start = now()
    try:
        for replica in targets:
            set_state(handle, replica, "refuse")
        marks.append(("refusing", now()))
        held = held_certificates(handle)
        time.sleep(max(0.0, start + plan.duration - now()))
    finally:
        errors: list[str] = []
        for replica in targets:
            try:
                set_state(handle, replica, "serve")
            except ExperimentError as exc:
                errors.append(str(exc))
    restored = now()
    marks.append(("restored", restored))
    if errors:
        raise ExperimentError("the CA was not restored: " + "; ".join(errors))
    end, more_marks, measures = await_refresh(handle, plan, held, restored, lifetime)
    marks += more_marks
    return FaultEvents("ca-down", "ca", "", start, end, marks=tuple(marks), measures=tuple(measures))


def held_certificates(handle: ClusterHandle) -> dict[str, dict[str, datetime]]:
    """Node -> SPIFFE id -> ``not_after`` of every workload certificate its ztunnel holds."""
    try:
        return {node: certificates(handle.ztunnel_config(node)) for node in handle.nodes()}
    except admin_client.AdminError as exc:
        raise ExperimentError(f"cannot read the ztunnels' certificates: {exc}") from exc


def await_refresh(
    handle: ClusterHandle,
    plan: FaultPlan,
    held: Mapping[str, Mapping[str, datetime]],
    restored: float,
    lifetime: timedelta,
) -> tuple[float, list[tuple[str, float]], list[tuple[str, float]]]:
    """After an outage of the CA that ended at ``restored`` (monotonic, now or just before): wait until
    every ztunnel holds a newer certificate for each identity whose refresh fell due in ``held`` (the
    certificates held during the outage). (end, marks, measures); end is ``restored`` if none was due."""
    restored_wall = datetime.now(UTC) - timedelta(seconds=now() - restored)
    marks: list[tuple[str, float]] = []

    def monotonic(at: datetime) -> float:
        return restored - (restored_wall - at).total_seconds()

    due = {
        node: {i: t for i, t in certs.items() if refresh_at(t, lifetime) <= restored_wall}
        for node, certs in held.items()
    }
    due = {node: certs for node, certs in due.items() if certs}
    expired = sorted(t for certs in held.values() for t in certs.values() if t <= restored_wall)
    if expired:
        marks.append(("certificate expired", monotonic(expired[0])))
    end = restored
    if due:
        # A ztunnel retries a refused refresh with backoff (at most 150 s): the retry may come that late.
        end = wait_until(
            lambda: all(refreshed(handle, node, certs) for node, certs in due.items()),
            "every ztunnel to hold certificates issued after the CA outage",
            plan.recovery_timeout + min(DEFAULT_BACKOFF_MAX, plan.duration),
            0.5,
        )
        marks.append(("refreshed", end))
    measures: list[tuple[str, float]] = [
        ("workload certificate TTL s", lifetime.total_seconds()),
        ("certificates held", float(sum(len(c) for c in held.values()))),
        ("certificates due for refresh", float(sum(len(c) for c in due.values()))),
        ("certificates expired during the outage", float(len(expired))),
    ]
    if due:
        measures.append(("refresh after restore s", round(end - restored, 2)))
    return end, marks, measures


def controlplane_ready(handle: ClusterHandle) -> bool:
    ready, total = handle.status().controlplane
    return total > 0 and ready == total


def controlplane_down(handle: ClusterHandle, plan: FaultPlan) -> FaultEvents:
    """Stop every control-plane replica for ``plan.duration`` s; halfway through, restart the target
    node's ztunnel gracefully (it must serve from its cache, with no CA and no xDS); then start the
    replicas again, wait until they are ready, and until every ztunnel holds a new certificate for each
    one whose refresh fell due during the outage (with `ambit up --workload-cert-ttl` short enough)."""
    node = plan.target_node
    lifetime = workload_lifetime(read_json(handle.layout.config))
    held = held_certificates(handle)
    start = now()
    marks: list[tuple[str, float]] = []
    try:
        handle.stop("controlplane")
        marks.append(("stopped", now()))
        time.sleep(plan.duration / 2)
        marks.append(("ztunnel restart", now()))
        handle.restart("ztunnel", node=node)
        marks.append(("ztunnel replaced", now()))
        time.sleep(max(0.0, start + plan.duration - now()))
    finally:
        handle.start("controlplane")
    restored = now()
    ready = wait_until(
        lambda: controlplane_ready(handle),
        "the control plane to be ready again",
        plan.recovery_timeout,
        0.5,
    )
    marks.append(("controlplane ready", ready))
    # The restarted ztunnel holds what it fetched before the outage (its cache): compare with that.
    end, more_marks, measures = await_refresh(handle, plan, held, restored, lifetime)
    return FaultEvents(
        "controlplane-down",
        "controlplane",
        "",
        start,
        max(end, ready),
        marks=tuple(marks + more_marks),
        measures=tuple(measures),
    )
