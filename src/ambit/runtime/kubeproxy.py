"""Services → the node DNAT tables (kube-proxy's role) and per-pod hosts files (names). Pure helpers.

:func:`service_ports` maps the store's Services and Pods to :class:`ServicePort` entries with only ready
endpoints (``targetPort`` numbers or container port names resolved per pod); the daemon applies the
same table to every node with ``NetRuntime.set_services``. :func:`hosts_file` renders a pod's
``/etc/hosts``: its own name and every Service as ``name``, ``name.ns``, ``name.ns.svc``,
``name.ns.svc.cluster.local`` (the short name only in the pod's namespace).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ambit.runtime.services import SERVICE_CIDR, Endpoint, ServicePort

Obj = Mapping[str, Any]


def pod_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_ip(pod: Obj) -> str | None:
    ip = (pod.get("status") or {}).get("podIP")
    return str(ip) if ip else None


def cluster_ip(service: Obj) -> str | None:
    ip = (service.get("spec") or {}).get("clusterIP")
    if not ip or ip == "None":
        return None
    try:
        from ipaddress import IPv4Address

        return str(ip) if IPv4Address(ip) in SERVICE_CIDR else None
    except ValueError:
        return None


def _target_port(service_port: Obj, pod: Obj) -> int | None:
    target = service_port.get("targetPort")
    if target is None:
        return int(service_port["port"])
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


def selects(service: Obj, pod: Obj) -> bool:
    selector = (service.get("spec") or {}).get("selector")
    if not selector:
        return False
    meta_s, meta_p = service.get("metadata") or {}, pod.get("metadata") or {}
    if (meta_s.get("namespace") or "default") != (meta_p.get("namespace") or "default"):
        return False
    labels = meta_p.get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def service_ports(services: Iterable[Obj], pods: Iterable[Obj]) -> list[ServicePort]:
    # a terminating pod is no endpoint (as Kubernetes' EndpointSlice "serving" without "ready")
    ready = [
        p
        for p in pods
        if pod_ready(p) and pod_ip(p) and not (p.get("metadata") or {}).get("deletionTimestamp")
    ]
    out: list[ServicePort] = []
    for svc in services:
        vip = cluster_ip(svc)
        if vip is None:
            continue
        for sp in (svc.get("spec") or {}).get("ports") or ():
            protocol = str(sp.get("protocol") or "TCP").lower()
            if protocol not in ("tcp", "udp"):
                continue
            endpoints = set()
            for pod in ready:
                if selects(svc, pod):
                    port = _target_port(sp, pod)
                    ip = pod_ip(pod)
                    if port is not None and ip is not None:
                        endpoints.add(Endpoint(ip, port))
            out.append(ServicePort(vip, int(sp["port"]), protocol, tuple(sorted(endpoints))))  # type: ignore[arg-type]
    return sorted(out, key=lambda s: s.key)


def tcp_ports(pod: Obj, services: Iterable[Obj]) -> set[int]:
    """Container ports to serve as TCP echo: a selecting Service's port named ``tcp``/``tcp-*`` or with
    ``appProtocol`` tcp, or a container port so named."""
    out: set[int] = set()
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            name = str(port.get("name") or "")
            if name == "tcp" or name.startswith("tcp-"):
                out.add(int(port["containerPort"]))
    for svc in services:
        if not selects(svc, pod):
            continue
        for sp in (svc.get("spec") or {}).get("ports") or ():
            name = str(sp.get("name") or "")
            if name == "tcp" or name.startswith("tcp-") or str(sp.get("appProtocol") or "").lower() == "tcp":
                port = _target_port(sp, pod)
                if port is not None:
                    out.add(port)
    return out


def hosts_file(pod_name: str, namespace: str, ip: str, services: Iterable[Obj]) -> str:
    lines = ["127.0.0.1\tlocalhost", f"{ip}\t{pod_name}"]
    for svc in sorted(
        services, key=lambda s: ((s.get("metadata") or {}).get("namespace", ""), s["metadata"]["name"])
    ):
        vip = cluster_ip(svc)
        if vip is None:
            continue
        name = svc["metadata"]["name"]
        ns = svc["metadata"].get("namespace") or "default"
        names = [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc", f"{name}.{ns}"]
        if ns == namespace:
            names.append(name)
        lines.append(f"{vip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"
