"""kube-proxy: the Services' DNAT table on every node (only ready endpoints; the rules are the pure
:mod:`ambit.runtime.kubeproxy`), re-applied when it changes; when the set of Services changes,
every pod's hosts file is rewritten (by its kubelet)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ambit.runtime import kubeproxy
from ambit.runtime.controllers.kubelet import Kubelet
from ambit.runtime.controllers.view import ClusterView, meta
from ambit.runtime.netns import NetRuntime
from ambit.runtime.services import ServicePort


class ServiceProxy:
    def __init__(self, net: NetRuntime, view: ClusterView, kubelets: Mapping[str, Kubelet]) -> None:
        self.net = net
        self.view = view
        self.kubelets = kubelets
        self._applied: list[ServicePort] | None = None
        self._hosts_services: list[tuple[Any, Any, str | None]] | None = None

    async def sync(self) -> None:
        services = self.view.objects("Service")
        ports = kubeproxy.service_ports(services, self.view.objects("Pod"))
        if ports != self._applied:
            for i in range(1, len(self.kubelets) + 1):
                await asyncio.to_thread(self.net.set_services, i, ports)
            self._applied = ports
        names = sorted(
            (meta(s).get("namespace"), meta(s).get("name"), kubeproxy.cluster_ip(s)) for s in services
        )
        if names != self._hosts_services:
            for kubelet in self.kubelets.values():
                kubelet.rewrite_hosts(services)
            self._hosts_services = names
