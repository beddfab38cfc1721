"""ztunnel end to end on loopback: outbound → HBONE (pool, the source pod's cert) → inbound → app."""

from __future__ import annotations

import json
import logging
import os

import pytest

from ambit.proxy.accesslog import ACCESS_LOGGER
from ambit.testing.ztunnel_mesh import APP_PORT, NS, SERVICE_HOST, VIP, Mesh, echo, eventually, total

SLEEP = f"spiffe://cluster.local/ns/{NS}/sa/sleep"
WEB = f"spiffe://cluster.local/ns/{NS}/sa/web"


async def two_pods(mesh: Mesh) -> tuple[object, object]:
    zt_a = mesh.ztunnel("node-1")
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    mesh.apply(a, b, mesh.service())
    await mesh.serve(zt_a, a)
    await mesh.serve(zt_b, b)
    return zt_a, zt_b


async def test_service_vip_to_endpoint_over_hbone(mesh: Mesh, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    zt_a, zt_b = await two_pods(mesh)
    app = await mesh.app(3)

    client = await mesh.connect(2, (VIP, 80))
    payload = os.urandom(64 * 1024)
    assert await echo(client, payload) == payload
    client.write_eof()
    assert await client.read() == b""
    await client.wait_closed()

    # the app saw pod A's address as its peer
    assert [peer[0] for peer in app.peers] == [mesh.ip(2)]

    source = zt_a.metrics  # type: ignore[attr-defined]
    destination = zt_b.metrics  # type: ignore[attr-defined]
    await eventually(
        lambda: (
            total(destination, "istio_tcp_connections_closed_total", reporter="destination") == 1
            and total(source, "istio_tcp_connections_closed_total", reporter="source") == 1
        )
    )
    common = {
        "source_principal": SLEEP,
        "destination_principal": WEB,
        "connection_security_policy": "mutual_tls",
        "response_flags": "-",
    }
    assert total(source, "istio_tcp_connections_opened_total", reporter="source", **common) == 1
    assert total(
        source,
        "istio_tcp_received_bytes_total",
        reporter="source",
        destination_service=SERVICE_HOST,
        **common,
    ) == len(payload)
    assert total(source, "istio_tcp_sent_bytes_total", reporter="source", **common) == len(payload)
    assert total(destination, "istio_tcp_connections_opened_total", reporter="destination", **common) == 1
    assert total(destination, "istio_tcp_received_bytes_total", reporter="destination", **common) == len(
        payload
    )
    assert total(destination, "istio_tcp_sent_bytes_total", reporter="destination", **common) == len(payload)
    assert total(
        destination, "istio_tcp_connections_opened_total", destination_workload="b", source_workload="a"
    )

    text = (await destination.exposition_async()).decode()
    assert f'source_principal="{SLEEP}"' in text

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    outbound = [line for line in lines if line["direction"] == "outbound"]
    inbound = [line for line in lines if line["direction"] == "inbound"]
    assert len(outbound) == 1 and len(inbound) == 1
    assert outbound[0]["outcome"] == "ok" and inbound[0]["outcome"] == "ok"
    assert outbound[0]["dst.addr"] == f"{VIP}:80"
    assert outbound[0]["dst.hbone_addr"] == f"{mesh.ip(3)}:{APP_PORT}"
    assert outbound[0]["dst.service"] == SERVICE_HOST
    assert outbound[0]["src.identity"] == SLEEP and outbound[0]["dst.identity"] == WEB
    assert outbound[0]["bytes_sent"] == len(payload) and outbound[0]["bytes_recv"] == len(payload)
    assert inbound[0]["src.identity"] == SLEEP and inbound[0]["dst.identity"] == WEB
    assert inbound[0]["src.addr"].startswith(mesh.ip(2) + ":")
    assert inbound[0]["bytes_sent"] == len(payload)


async def test_endpoint_retry_skips_an_endpoint_whose_hbone_listener_is_down(
    mesh: Mesh, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ambit.ztunnel.outbound")
    zt_a = mesh.ztunnel("node-1")
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    dead = mesh.workload("c", 4, "web", node="node-3", service=True)  # in the config, nothing listens
    mesh.apply(a, b, dead, mesh.service())
    await mesh.serve(zt_a, a)
    await mesh.serve(zt_b, b)
    app = await mesh.app(3)

    failures = 0
    for i in range(50):
        client = await mesh.connect(2, (VIP, 80))
        try:
            assert await echo(client, f"ping {i}".encode()) == f"ping {i}".encode()
        except Exception:
            failures += 1
        client.write_eof()
        await client.read_all()
    assert failures == 0
    assert len(app.peers) == 50
    await eventually(
        lambda: total(zt_a.metrics, "istio_tcp_connections_closed_total", response_flags="-") == 50
    )
    # the dead endpoint was really tried first, about half the time (never: probability 2**-50)
    retried = [r for r in caplog.records if "trying the next endpoint" in r.getMessage()]
    assert 0 < len(retried) < 50
    assert all(mesh.ip(4) in r.getMessage() for r in retried)
