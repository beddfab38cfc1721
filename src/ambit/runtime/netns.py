"""Apply network plans to real namespaces, keep a state file, tear everything down.

:class:`NetRuntime` is the only place that creates or deletes a cluster's namespaces. Every call is
blocking (it runs ``ip``/``nft``); from an event loop use ``asyncio.to_thread``. One instance per
cluster; its methods are serialised by a lock.

Crash safety: the state file (``<state_dir>/net-<cluster>.json``) is written *before* a namespace is
created, so a daemon that dies half-way leaves a record of everything it may have made.
:meth:`NetRuntime.teardown` deletes what the state file lists and also sweeps ``ip netns list`` for
names this cluster owns (:func:`netplan.owns_netns`), never another cluster's or anyone else's.

Deleting a pod's netns does not end processes inside it (the supervisor stops those, by pid, first);
a namespace that still has processes stays alive after its name is removed. To make sure the pod is
cut off anyway, removal first deletes the node-side veth ``p<n>``, which destroys the pair.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ambit.runtime import netplan, nsexec, services
from ambit.runtime.netplan import (
    AddNetns,
    ClusterLayout,
    ClusterPlan,
    IpBatch,
    NftScript,
    NodeSpec,
    PodPlan,
    Step,
    Sysctl,
)

log = logging.getLogger(__name__)

STATE_VERSION = 1
ETC_NETNS = Path("/etc/netns")


class NetError(RuntimeError):
    """A network command failed, or the request conflicts with what exists."""


@dataclass(frozen=True)
class PodNet:
    uid: str
    short: str
    netns: str
    node_index: int
    node_netns: str
    ip: str
    host: int
    veth: str


@dataclass
class TeardownReport:
    deleted: list[str] = field(default_factory=list)
    lingering_pids: dict[str, list[int]] = field(default_factory=dict)


def run_cmd(
    argv: Sequence[str], *, input_text: str | None = None, check: bool = True, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    proc = subprocess.run(
        list(argv), input=input_text, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        raise NetError(f"{' '.join(argv)} failed ({proc.returncode}): {detail}")
    return proc


def execute(step: Step) -> None:
    """Carry out one plan step."""
    if isinstance(step, AddNetns):
        run_cmd(["ip", "-batch", "-"], input_text="".join(f"netns add {n}\n" for n in step.names))
    elif isinstance(step, Sysctl):
        argv = ["sysctl", "-q", *(["-e"] if step.optional else []), "-w"]
        argv += [f"{k}={v}" for k, v in step.settings]
        proc = nsexec.run(step.netns, argv, check=False)
        if proc.returncode != 0 and not step.optional:
            raise NetError(f"sysctl in {step.netns} failed: {proc.stderr.strip()}")
    elif isinstance(step, IpBatch):
        run_cmd(["ip", "-n", step.netns, "-batch", "-"], input_text="\n".join(step.commands) + "\n")
    elif isinstance(step, NftScript):
        nsexec.run(step.netns, ["nft", "-f", "-"], input_text=step.script)
    else:  # pragma: no cover - exhaustive
        raise TypeError(step)


def list_netns() -> list[str]:
    """Names under ``/run/netns`` (``ip -j netns list``)."""
    out = run_cmd(["ip", "-j", "netns", "list"]).stdout.strip()
    return [entry["name"] for entry in json.loads(out)] if out else []


def netns_pids(name: str) -> list[int]:
    proc = run_cmd(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


class NetRuntime:
    """The network of one cluster: create, add/remove pods, service tables, teardown."""

    def __init__(self, cluster: str, state_dir: str | os.PathLike[str]) -> None:
        netplan.validate_cluster_name(cluster)
        self.cluster = cluster
        self.state_dir = Path(state_dir)
        self.state_path = self.state_dir / f"net-{cluster}.json"
        self._lock = threading.RLock()
        self._state: dict[str, Any] = self._load()

    # --- state ---------------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return self._empty_state()
        if data.get("cluster") != self.cluster or data.get("version") != STATE_VERSION:
            raise NetError(f"state file {self.state_path} is not a v{STATE_VERSION} state of {self.cluster}")
        return data

    def _empty_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "cluster": self.cluster, "layout": None, "netns": [], "pods": {}}

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self._state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def _record_netns(self, names: Iterable[str]) -> None:
        known: list[str] = self._state["netns"]
        for name in names:
            if name not in known:
                known.append(name)
        self._save()

    def _forget_netns(self, name: str) -> None:
        if name in self._state["netns"]:
            self._state["netns"].remove(name)

    @property
    def layout(self) -> ClusterLayout:
        raw = self._state.get("layout")
        if raw is None:
            raise NetError(f"cluster {self.cluster} has no network")
        return ClusterLayout(raw["name"], [NodeSpec(**n) for n in raw["nodes"]])

    # --- queries -------------------------------------------------------------------------------------

    def owned_netns(self) -> list[str]:
        """This cluster's namespaces that exist now (by name)."""
        return [n for n in list_netns() if netplan.owns_netns(self.cluster, n)]

    def exists(self) -> bool:
        return self.state_path.exists() or bool(self.owned_netns())

    def node_netns(self, index: int) -> str:
        self.layout.node(index)
        return netplan.node_netns(self.cluster, index)

    def pods(self) -> list[PodNet]:
        with self._lock:
            return [PodNet(**p) for p in self._state["pods"].values()]

    def pod(self, uid: str) -> PodNet | None:
        with self._lock:
            raw = self._state["pods"].get(netplan.pod_short(uid))
            return PodNet(**raw) if raw and raw["uid"] == uid else None

    # --- cluster -------------------------------------------------------------------------------------

    def create_cluster(self, plan: ClusterPlan) -> None:
        """Build fabric and nodes. Refuses if anything of this cluster exists; rolls back on failure."""
        if plan.cluster != self.cluster:
            raise NetError(f"plan is for cluster {plan.cluster}, runtime for {self.cluster}")
        with self._lock:
            if self.exists():
                raise NetError(f"cluster {self.cluster} network already exists (teardown first)")
            self._state = self._empty_state()
            layout = plan.layout
            self._state["layout"] = {"name": layout.name, "nodes": [asdict(n) for n in layout.nodes]}
            self._record_netns(plan.netns_names)
            try:
                for step in plan.steps:
                    execute(step)
            except BaseException:
                log.exception("creating cluster %s network failed; rolling back", self.cluster)
                self.teardown()
                raise

    # --- pods ----------------------------------------------------------------------------------------

    def add_pod(self, node_index: int, uid: str, *, host: int | None = None) -> PodNet:
        """Create the pod's netns and routed veth on node ``node_index``; the address is
        ``10.244.<node>.<host>`` when ``host`` is given and free (a pod whose sandbox is re-created after
        a node reboot keeps its address), else the lowest free ``10.244.<node>.<n>``. Capture is
        separate (:func:`ambit.runtime.capture.apply`)."""
        with self._lock:
            layout = self.layout
            short = netplan.pod_short(uid)
            if short in self._state["pods"]:
                other = self._state["pods"][short]["uid"]
                raise NetError(f"pod {uid}: short id {short} already used by pod {other}")
            used = [p["host"] for p in self._state["pods"].values() if p["node_index"] == node_index]
            chosen = netplan.allocate_pod_host(used)
            if (
                host is not None
                and host not in used
                and netplan.FIRST_POD_HOST <= host <= netplan.LAST_POD_HOST
            ):
                chosen = host
            plan = netplan.plan_pod(layout, node_index, chosen, short)
            pod = _pod_net(uid, plan)
            self._state["pods"][short] = asdict(pod)
            self._record_netns([plan.netns])
            try:
                for step in plan.steps:
                    execute(step)
            except BaseException:
                log.exception("adding pod %s failed; rolling back", uid)
                self._delete_pod(pod)
                raise
            return pod

    def remove_pod(self, uid: str) -> list[int]:
        """Delete the pod's network (idempotent). Returns pids still inside its netns, if any (they
        are cut off from the network; the supervisor must stop them)."""
        with self._lock:
            short = netplan.pod_short(uid)
            raw = self._state["pods"].get(short)
            if raw is None or raw["uid"] != uid:
                return []
            return self._delete_pod(PodNet(**raw))

    def _delete_pod(self, pod: PodNet) -> list[int]:
        pids = netns_pids(pod.netns)
        if pids:
            log.warning("pod netns %s still has processes %s", pod.netns, pids)
        run_cmd(["ip", "-n", pod.node_netns, "link", "del", "dev", pod.veth], check=False)
        _delete_netns(pod.netns)
        _remove_etc_netns(self.cluster, pod.netns)
        self._state["pods"].pop(pod.short, None)
        self._forget_netns(pod.netns)
        self._save()
        return pids

    # --- services ------------------------------------------------------------------------------------

    def set_services(self, node_index: int, ports: Iterable[services.ServicePort]) -> None:
        """Replace node ``node_index``'s service table atomically with this mapping (ready endpoints)."""
        script = services.replace_script(list(ports))
        with self._lock:  # keeps concurrent updates of one node in call order
            nsexec.run(self.node_netns(node_index), ["nft", "-f", "-"], input_text=script)

    # --- probes --------------------------------------------------------------------------------------

    def _probe_socket(self, node_index: int, timeout: float) -> socket.socket:
        """A TCP socket in node ``node_index``'s namespace, bound to the probe source (not captured)."""

        def setup(sock: socket.socket) -> None:
            sock.bind((netplan.PROBE_SOURCE, 0))

        sock = nsexec.socket_in_netns(self.node_netns(node_index), setup=setup)
        sock.settimeout(timeout)
        return sock

    def probe_tcp(self, node_index: int, ip: str, port: int, timeout: float = 1.0) -> bool:
        """A TCP readiness probe from node ``node_index`` with source ``169.254.7.127`` (not captured)."""
        with self._probe_socket(node_index, timeout) as sock:
            try:
                sock.connect((ip, port))
            except OSError:
                return False
            return True

    def probe_http(self, node_index: int, ip: str, port: int, path: str, timeout: float = 1.0) -> bool:
        """An httpGet readiness probe as the kubelet's: ``GET path`` from ``169.254.7.127`` on node
        ``node_index``; ready on a status from 200 to 399."""
        with self._probe_socket(node_index, timeout) as sock:
            try:
                sock.connect((ip, port))
                target = path if path.startswith("/") else f"/{path}"
                request = (
                    f"GET {target} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/ambit\r\n"
                    "Accept: */*\r\nConnection: close\r\n\r\n"
                )
                sock.sendall(request.encode("latin-1"))
                head = b""
                while b"\r\n" not in head and len(head) < 1024:
                    chunk = sock.recv(1024)
                    if not chunk:
                        break
                    head += chunk
            except (OSError, UnicodeError):
                return False
        return http_probe_passed(head)

    # --- teardown ------------------------------------------------------------------------------------

    def teardown(self) -> TeardownReport:
        """Delete every namespace of this cluster (state file + name sweep) and the state file.
        Idempotent; the state file stays if a deletion failed, so a retry still knows everything."""
        with self._lock:
            report = TeardownReport()
            existing = set(list_netns())
            recorded = [n for n in self._state["netns"] if netplan.owns_netns(self.cluster, n)]
            swept = [n for n in existing if netplan.owns_netns(self.cluster, n) and n not in recorded]
            names = _teardown_order(self.cluster, [*recorded, *swept])
            errors: list[str] = []
            for name in names:
                if name in existing:
                    pids = netns_pids(name)
                    if pids:
                        report.lingering_pids[name] = pids
                        log.warning("netns %s still has processes %s", name, pids)
                    try:
                        _delete_netns(name)
                    except NetError as exc:
                        errors.append(str(exc))
                        continue
                    report.deleted.append(name)
                _remove_etc_netns(self.cluster, name)
            if errors:
                raise NetError("; ".join(errors))
            self._state = self._empty_state()
            self.state_path.unlink(missing_ok=True)
            return report


def _pod_net(uid: str, plan: PodPlan) -> PodNet:
    return PodNet(
        uid=uid,
        short=plan.short,
        netns=plan.netns,
        node_index=plan.node_index,
        node_netns=plan.node_netns,
        ip=plan.ip,
        host=plan.host,
        veth=plan.node_veth,
    )


def _teardown_order(cluster: str, names: Iterable[str]) -> list[str]:
    """Pods, then nodes, then the fabric."""
    prefix = netplan.fabric_netns(cluster).removesuffix("fabric")

    def rank(name: str) -> int:
        suffix = name.removeprefix(prefix)
        if suffix.startswith("pod-"):
            return 0
        return 2 if suffix == "fabric" else 1

    return sorted(dict.fromkeys(names), key=lambda n: (rank(n), n))


def _delete_netns(name: str) -> None:
    proc = run_cmd(["ip", "netns", "del", name], check=False)
    if proc.returncode != 0 and os.path.exists(nsexec.netns_path(name)):
        raise NetError(f"ip netns del {name} failed: {proc.stderr.strip()}")


def _remove_etc_netns(cluster: str, name: str) -> None:
    """Per-namespace files for ``ip netns exec`` (e.g. a pod's hosts file) of this cluster only."""
    if not netplan.owns_netns(cluster, name):
        return
    path = ETC_NETNS / name
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def http_probe_passed(head: bytes) -> bool:
    """Whether a response starting with ``head`` passes an httpGet probe (status 200-399)."""
    line = head.split(b"\r\n", 1)[0].split()
    if len(line) < 2 or not line[0].startswith(b"HTTP/") or not line[1].isdigit():
        return False
    return 200 <= int(line[1]) < 400
