"""Live connections in /config_dump, read over HTTP by the runtime's admin client, shown by the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest

from ambit.cli import ztunnel_config as zc
from ambit.proxy.admin import AdminServers
from ambit.runtime.admin_client import http_get
from ambit.testing.ztunnel_mesh import APP_PORT, VIP, Mesh, echo

SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"
WEB = "spiffe://cluster.local/ns/default/sa/web"


async def test_config_dump_lists_live_connections_and_the_cli_renders_them(mesh: Mesh) -> None:
    zt_a = mesh.ztunnel("node-1")
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    mesh.apply(a, b, mesh.service())
    await mesh.serve(zt_a, a)
    await mesh.serve(zt_b, b)
    await mesh.app(3)

    conn = await mesh.connect(2, (VIP, 80))
    assert await echo(conn, b"hello") == b"hello"
    [live] = zt_b.config_dump().connections
    assert live.direction == "inbound" and live.protocol == "HBONE"
    assert live.source == mesh.ip(2)
    assert live.destination == f"{mesh.ip(3)}:{APP_PORT}"
    assert (live.source_identity, live.destination_identity) == (SLEEP, WEB)
    assert live.workload_uid == "b" and live.workload == f"default/{b.name}"
    assert live.bytes_received >= 5 and live.bytes_sent >= 5 and live.age_seconds >= 0
    assert zt_a.config_dump().connections == ()  # outbound is not listed

    admin = AdminServers(
        config_dump=lambda: zt_b.config_dump().to_json(),
        metrics=zt_b.metrics.exposition_async,
        ready=lambda: True,
        admin=("127.0.0.1", 0),
        metrics_address=("127.0.0.1", 0),
        readiness=("127.0.0.1", 0),
    )
    await admin.start()
    try:
        targets: list[str | None] = [None]
        if os.geteuid() == 0:
            targets.append("/proc/self/ns/net")  # the socket is made on a thread that setns()es
        for target in targets:
            status, body = await asyncio.to_thread(
                http_get, target, "/config_dump", port=admin.ports["admin"]
            )
            assert status == 200
            dump = json.loads(body)
            assert [c["workload_uid"] for c in dump["connections"]] == ["b"]
            rows = zc.render("connections", [("node-2", dump)], node_column=True).splitlines()
            assert rows[0].split()[:3] == ["NODE", "WORKLOAD", "DIRECTION"]
            assert rows[1].split()[:6] == [
                "node-2",
                f"default/{b.name}",
                "inbound",
                "HBONE",
                mesh.ip(2),
                f"{mesh.ip(3)}:{APP_PORT}",
            ]
            assert len(zc.render("certificates", [("node-2", dump)], node_column=False).splitlines()) == 2
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            free = unused.getsockname()[1]  # bound, never listening: connecting is refused
            with pytest.raises(ConnectionRefusedError):
                await asyncio.to_thread(http_get, None, "/config_dump", port=free, timeout=2)
    finally:
        await admin.close()
        conn.abort()
