"""Readiness probes: which checks a pod's containers declare (a TCP connect, or an HTTP GET on a
path), run from the pod's node (source 169.254.7.127) with a 0.5 s timeout each."""

from __future__ import annotations

import asyncio
from typing import Any

from ambit.runtime.netns import NetRuntime

PROBE_TIMEOUT = 0.5

Check = tuple[int, str | None]  # (port, httpGet path or None for a TCP connect)


def readiness_checks(pod: dict[str, Any]) -> list[Check]:
    """Each container's ``readinessProbe`` (tcpSocket, or httpGet: a path over HTTP, a TCP connect over
    HTTPS); a container without one: a TCP connect to each of its ports."""
    checks: list[Check] = []
    for container in pod["spec"].get("containers") or ():
        named = {
            p.get("name"): int(p["containerPort"]) for p in container.get("ports") or () if p.get("name")
        }
        probe = container.get("readinessProbe") or {}
        http = probe.get("httpGet")
        action = probe.get("tcpSocket") or http
        if action is not None:
            port = action.get("port")
            number = named[port] if isinstance(port, str) and port in named else int(port)
            path: str | None = None  # a TCP connect (tcpSocket, or httpGet over HTTPS)
            if http is not None and str(http.get("scheme") or "HTTP").upper() == "HTTP":
                path = str(http.get("path") or "/")
            checks.append((number, path))
        else:
            checks += [(int(p["containerPort"]), None) for p in container.get("ports") or ()]
    return checks


async def run_checks(net: NetRuntime, node_index: int, ip: str, checks: list[Check]) -> bool:
    """All checks pass (run at once, each in a thread)."""
    results = await asyncio.gather(
        *(
            asyncio.to_thread(net.probe_tcp, node_index, ip, port, PROBE_TIMEOUT)
            if path is None
            else asyncio.to_thread(net.probe_http, node_index, ip, port, path, PROBE_TIMEOUT)
            for port, path in checks
        )
    )
    return all(results)
