"""Where a local cluster keeps its files: everything under ``cluster_dir(C)`` (``/run/ambit/C``).

::

    <cd>/store.sock, <cd>/store/          the store (ambit.store.paths)
    <cd>/cluster.json                     what `ambit up` was asked for (nodes, zones, options)
    <cd>/state/ca/                        the cluster CA (the control plane reads it)
    <cd>/state/net-C.json                 the network state file (NetRuntime)
    <cd>/nodes/nodeI/node-{cert,key}.pem  node credential; trust-bundle.pem; ztunnel.sock (the agent listens)
    <cd>/pids/daemon.json, <cd>/pids/<process>.json   every process the runtime started (pid + argv)
    <cd>/logs/<component>.log             daemon, ztunnel-nodeI, pod-<ns>-<pod>-<container>
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ambit.resources.names import CA_SUBDIR, CONTROL_PLANE_NAMESPACE, TOKENS_SUBDIR
from ambit.store import paths

SYSTEM_NAMESPACE = CONTROL_PLANE_NAMESPACE  # the runtime runs the control plane in its namespace

HBONE_PORT = 15008  # mTLS data between ztunnels (pod to pod)
XDS_PORT = 15012  # the control plane: xDS and the CA, over mTLS
TOKEN_CA_PORT = 15013  # the control plane's CA for token callers (a waypoint's first certificate), TLS
STORE_FABRIC_PORT = 6443  # the store's TLS listener on the fabric (node heartbeats; kube-apiserver's port)
# The only TCP ports an enrolled cluster's traffic uses between nodes (the fabric): anything else on the
# wire is plaintext. `ambit demo` and the fabric-capture tests check against this one list.
FABRIC_PORTS = frozenset({HBONE_PORT, XDS_PORT, TOKEN_CA_PORT, STORE_FABRIC_PORT})


@dataclass(frozen=True)
class Layout:
    cluster: str

    @property
    def root(self) -> Path:
        return paths.cluster_dir(self.cluster)

    @property
    def store_socket(self) -> Path:
        return paths.socket_path(self.cluster)

    @property
    def store_data(self) -> Path:
        return paths.data_dir(self.cluster)

    @property
    def config(self) -> Path:
        return self.root / "cluster.json"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def ca_dir(self) -> Path:
        return self.state_dir / CA_SUBDIR

    @property
    def fabric_pki_dir(self) -> Path:
        """The store's fabric listener: its CA, its server certificate, each node's client certificate."""
        return self.state_dir / "fabric-pki"

    @property
    def tokens_dir(self) -> Path:
        """The pod-token keys (the runtime signs with them, the control plane verifies)."""
        return self.state_dir / TOKENS_SUBDIR

    @property
    def pods_dir(self) -> Path:
        """Per-pod files the kubelet projects (``<uid>/token``)."""
        return self.root / "pods"

    @property
    def pids_dir(self) -> Path:
        return self.root / "pids"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def daemon_pid(self) -> Path:
        return self.pids_dir / "daemon.json"

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def ztunnel_socket(self, node: str) -> Path:
        return self.node_dir(node) / "ztunnel.sock"

    def log(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def pid_file(self, key: str) -> Path:
        return self.pids_dir / f"{key}.json"


def node_name(index: int) -> str:
    return f"node{index}"


def node_index(name: str) -> int:
    if not name.startswith("node") or not name[4:].isdigit():
        raise ValueError(f"{name!r} is not a node name")
    return int(name[4:])


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
