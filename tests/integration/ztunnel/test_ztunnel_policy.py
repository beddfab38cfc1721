"""L4 authorization at the destination ztunnel: DENY on the source principal, live recheck, STRICT."""

from __future__ import annotations

import asyncio

from ambit.model.policy import (
    STRICT_POLICY_NAME,
    Action,
    Authorization,
    Clause,
    Match,
    MatchKind,
    Rule,
    Scope,
    StringMatch,
)
from ambit.testing.ztunnel_mesh import APP_PORT, NS, VIP, Mesh, closed_by_peer, echo, eventually, total
from ambit.ztunnel.manager import Ztunnel

DENY_SLEEP = Authorization(
    name="deny-sleep",
    namespace=NS,
    scope=Scope.NAMESPACE,
    action=Action.DENY,
    rules=(Rule((Clause((Match(principals=(StringMatch.parse(f"cluster.local/ns/{NS}/sa/sleep"),)),)),)),),
)
STRICT = Authorization(
    name=STRICT_POLICY_NAME,
    namespace="istio-system",
    scope=Scope.WORKLOAD_SELECTOR,
    action=Action.DENY,
    rules=(Rule((Clause((Match(not_principals=(StringMatch(MatchKind.PRESENCE),)),)),)),),
)


async def setup(mesh: Mesh, *, policies: tuple[str, ...] = ()) -> tuple[Ztunnel, Ztunnel]:
    zt_a = mesh.ztunnel("node-1")
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True, policies=policies)
    mesh.apply(a, b, mesh.service())
    await mesh.serve(zt_a, a)
    await mesh.serve(zt_b, b)
    await mesh.app(3)
    return zt_a, zt_b


async def test_deny_policy_refuses_new_and_closes_open_connections(mesh: Mesh) -> None:
    zt_a, zt_b = await setup(mesh)
    loop = asyncio.get_running_loop()

    open_conn = await mesh.connect(2, (VIP, 80))
    assert await echo(open_conn, b"before") == b"before"
    await eventually(lambda: len(zt_b.connections) == 1)

    mesh.apply(DENY_SLEEP)
    applied = loop.time()
    assert await closed_by_peer(open_conn, within=5.0)
    assert loop.time() - applied < 1.0
    assert zt_b.connections.revoked_total == 1

    denied = await mesh.connect(2, (VIP, 80))
    denied.write(b"should not arrive")
    assert await closed_by_peer(denied)

    mesh.remove(DENY_SLEEP)
    after = await mesh.connect(2, (VIP, 80))
    assert await echo(after, b"after") == b"after"
    after.write_eof()
    assert await after.read_all() == b""
    app = mesh.apps[0]
    assert app.received == len(b"before") + len(b"after")  # nothing of the denied one reached it
    # both the revoked and the refused connection are reported with response_flags=DENY
    await eventually(
        lambda: total(zt_b.metrics, "istio_tcp_connections_closed_total", response_flags="DENY") == 2
    )
    assert total(zt_a.metrics, "istio_tcp_connections_closed_total", response_flags="DENY") == 1


async def test_strict_refuses_plaintext_and_permissive_admits_it(mesh: Mesh) -> None:
    _zt_a, zt_b = await setup(mesh, policies=(f"istio-system/{STRICT_POLICY_NAME}",))
    mesh.apply(STRICT)
    pod_b = (mesh.ip(3), APP_PORT)

    plain = await mesh.connect_to(9, pod_b, (mesh.ip(3), 15006))
    plain.write(b"plaintext")
    assert await closed_by_peer(plain)
    assert mesh.apps[0].received == 0

    # mTLS traffic is still admitted under STRICT
    meshed = await mesh.connect(2, (VIP, 80))
    assert await echo(meshed, b"mtls") == b"mtls"

    mesh.remove(STRICT)  # PERMISSIVE: the policy is gone
    plain = await mesh.connect_to(9, pod_b, (mesh.ip(3), 15006))
    assert await echo(plain, b"plaintext") == b"plaintext"
    assert mesh.apps[0].peers[-1][0] == mesh.ip(9)  # the app sees the plaintext client's address
    plaintext = {"reporter": "destination", "connection_security_policy": "none"}
    assert total(zt_b.metrics, "istio_tcp_connections_opened_total", **plaintext) == 2  # refused + admitted
    assert total(zt_b.metrics, "istio_tcp_connections_closed_total", response_flags="DENY", **plaintext) == 1
    await eventually(lambda: len(zt_b.connections) == 2)

    # a STRICT policy applied later closes the open plaintext connection, not the mTLS one
    mesh.apply(STRICT)
    assert await closed_by_peer(plain, within=5.0)
    assert await echo(meshed, b"still") == b"still"
