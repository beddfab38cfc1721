"""The configurations ``ambit bench mesh`` compares: each one a row, with its own set-up and teardown.

Every configuration carries the same traffic between the same two pods (client on node 1, server on
node 2); only what sits on the path changes. A configuration names the proxy processes that carry that
traffic (their CPU and memory are its cost) and whether the idle-connection scale test applies to it.
An L7 row (``l7``) addresses the server through its Service's cluster IP and runs only the HTTP workloads;
it counts the requests its L7 proxy answered (`counted_requests`), so the bench can prove the proxy was on
the path. The L7 rows live in ``mesh_waypoint`` (ambit through a waypoint) and ``mesh_nginx`` (the C
peer); ``mesh.CONFIGURATIONS`` lists every row in order.

* `NoMesh`: the pods are not enrolled; the ztunnels run but carry nothing.
* `AmbitL4`: the namespace is labelled ``istio.io/dataplane-mode=ambient``: the client pod's traffic is
  captured to node 1's ztunnel, carried over HBONE (mTLS, HTTP/2 CONNECT) to node 2's ztunnel and
  delivered to the server pod.
* `StunnelL4`: one stunnel per node namespace, TLS 1.3 with mutual authentication, certificates from the
  cluster's own CA (``ambit ca issue``) and ``verifyChain``. A DNAT rule in node 1's namespace steers the
  client pod's traffic to the server pod's ports into node 1's stunnel, which connects to node 2's
  stunnel, which connects to the server pod. Its machinery (processes in node namespaces, the DNAT
  steering, certificates, stunnel services) is `HostProxies` and the helpers below, which the nginx L7
  peer shares.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ambit.bench.mesh_cluster import (
    HTTP_PORT,
    IPERF_PORT,
    NAMESPACE,
    PAYLOAD_PATH,
    BenchCluster,
    BenchError,
    nofile_limit,
)
from ambit.bench.mesh_cost import tree


class Configuration:
    """One row of the comparison. Subclasses override what differs."""

    key = ""  # short id used in tables and ratios
    name = ""  # shown in the tables
    description = ""  # one sentence for the methodology note
    idle_scale = False  # run the idle-connection scale test in this configuration
    idle_max: int | None = None  # hold at most this many there (None: the plan's count)
    l7 = False  # addressed through the Service; HTTP workloads only; its L7 proxy counts the requests

    def setup(self, cluster: BenchCluster) -> None:
        """Put this configuration's proxies on the path; return once traffic takes it."""

    def teardown(self, cluster: BenchCluster) -> None:
        """Undo `setup`; must be safe after a partial set-up."""

    def proxies(self, cluster: BenchCluster) -> dict[str, int]:
        """Name → pid of every proxy process carrying the traffic (each counted with its descendants)."""
        return {}

    def raise_nofile(self, cluster: BenchCluster) -> None:
        """Raise RLIMIT_NOFILE of the proxies before the idle-connection test (if they need it)."""

    def idle_capacity(self, nofile: int) -> int:
        """How many idle connections the proxies can hold with `nofile` descriptors each."""
        return nofile

    def address(self, cluster: BenchCluster) -> str:
        """The address the client pod sends to: the server pod's IP, or (L7 rows) the Service's."""
        topo = cluster.topology
        assert topo is not None
        return topo.server_vip if self.l7 else topo.server_ip

    def counted_requests(self, cluster: BenchCluster) -> int | None:
        """Requests the row's L7 proxy has answered so far (None: no L7 proxy to ask)."""
        return None

    def on_path(self) -> str:
        """The L7 proxy whose count `counted_requests` reads, as the report names it."""
        return ""

    def probe(self, cluster: BenchCluster) -> bool:
        """One request from the client pod to `address`: answered 200 and counted by the L7 proxy?"""
        topo = cluster.topology
        assert topo is not None
        url = f"http://{self.address(cluster)}:{HTTP_PORT}{PAYLOAD_PATH}"
        argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", url]
        try:
            before = self.counted_requests(cluster)
            code = cluster.run_in(topo.client_netns, argv, timeout=10).strip()
            after = self.counted_requests(cluster)
        except BenchError:
            return False
        return code == "200" and before is not None and after is not None and after > before


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` every 0.2 s until it holds; BenchError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


class NoMesh(Configuration):
    key = "none"
    name = "no mesh"
    description = "pods not enrolled; packets are routed node 1 → node 2 with no proxy on the path"


class AmbitL4(Configuration):
    key = "ambit"
    name = "ambit L4"
    description = (
        "namespace labelled istio.io/dataplane-mode=ambient: captured in the client pod, node 1's ztunnel → "
        "HBONE (mTLS, HTTP/2 CONNECT, pooled) → node 2's ztunnel → the server pod"
    )
    idle_scale = True

    def setup(self, cluster: BenchCluster) -> None:
        cluster.set_ambient(True)

    def teardown(self, cluster: BenchCluster) -> None:
        cluster.set_ambient(False)

    def proxies(self, cluster: BenchCluster) -> dict[str, int]:
        return cluster.ztunnel_pids()

    def raise_nofile(self, cluster: BenchCluster) -> None:
        limit = nofile_limit()
        for pid in self.proxies(cluster).values():
            for p in tree(pid):
                subprocess.run(
                    ["prlimit", "--pid", str(p), f"--nofile={limit}:{limit}"],
                    capture_output=True,
                    check=False,
                )

    def idle_capacity(self, nofile: int) -> int:
        # one descriptor per tunnelled connection on each side, plus one HBONE connection per 100 streams
        return (nofile - 512) * 100 // 101


STUNNEL_GLOBAL = """\
foreground = yes
pid =
debug = 3
output = {log}
"""

STUNNEL_SERVICE = """\
[{name}]
{client}accept = {accept}
connect = {connect}
cert = {cert}
key = {key}
CAfile = {ca}
verifyChain = yes
sslVersionMin = TLSv1.3
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
"""

_STEER_TABLE = "ambit_bench"


def issue_certificate(cluster: BenchCluster, account: str, prefix: str) -> Path:
    """``ambit ca issue`` from the cluster's own CA for ``spiffe://cluster.local/ns/bench/sa/<account>``;
    the prefix of the ``-cert.pem`` (leaf and chain) and ``-key.pem`` files it wrote."""
    out = cluster.dir / prefix
    identity = f"spiffe://cluster.local/ns/{NAMESPACE}/sa/{account}"
    cluster.ambit("ca", "issue", "--dir", str(cluster.ca_dir), "--identity", identity, "--out", str(out))
    return out


def stunnel_service(name: str, *, client: bool, accept: str, connect: str, prefix: Path, ca: Path) -> str:
    """One stunnel service: TLS 1.3, mutual authentication against the cluster CA (``verifyChain``)."""
    return STUNNEL_SERVICE.format(
        name=name,
        client="client = yes\n" if client else "",
        accept=accept,
        connect=connect,
        cert=f"{prefix}-cert.pem",
        key=f"{prefix}-key.pem",
        ca=ca,
    )


@dataclass
class HostProxies(Configuration):
    """A row whose proxies are processes the bench starts in the nodes' namespaces, with the client pod's
    traffic steered into node 1's proxy by a DNAT rule in node 1's namespace (at ``dstnat - 5``, before the
    runtime's Service DNAT at ``dstnat``). `StunnelL4` and the nginx L7 peer (``mesh_nginx``) are two."""

    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    _steered: bool = False

    def start(self, cluster: BenchCluster, name: str, netns: str, argv: list[str], *logs: Path) -> None:
        """Start proxy `name` (a cost row of its own); its stderr goes to the first of `logs`, every one of
        which is shown if it exits early."""
        self._logs[name] = logs
        self._procs[name] = cluster.start_in(netns, argv, nofile=nofile_limit(), log=logs[0])

    def wait_listening(self, cluster: BenchCluster, netns: str, port: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            out = cluster.run_in(netns, ["ss", "-Hltn", f"sport = :{port}"], timeout=10)
            if out.strip():
                return
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    log = "".join(
                        path.read_text(errors="replace")[-2000:] for path in self._logs[name] if path.exists()
                    )
                    raise BenchError(f"{name} exited with {proc.returncode}:\n{log}")
            if time.monotonic() > deadline:
                raise BenchError(f"nothing listens on port {port} in {netns} after {timeout:.0f} s")
            time.sleep(0.1)

    def steer(self, cluster: BenchCluster, redirects: list[tuple[str, int, int]]) -> None:
        """DNAT the client pod's TCP to (address, port) onto node 1's own address at the third value."""
        topo = cluster.topology
        assert topo is not None
        rules = "\n".join(
            f"ip saddr {topo.client_ip} ip daddr {address} tcp dport {port} "
            f"dnat to {topo.client_node_ip}:{local}"
            for address, port, local in redirects
        )
        script = (
            f"table ip {_STEER_TABLE} {{\n chain pre {{\n  type nat hook prerouting priority dstnat - 5; "
            f"policy accept;\n  {rules}\n }}\n}}\n"
        )
        (cluster.dir / "steer.nft").write_text(script)
        self._steered = True
        cluster.run_in(topo.client_node_netns, ["nft", "-f", str(cluster.dir / "steer.nft")], timeout=30)

    def teardown(self, cluster: BenchCluster) -> None:
        topo = cluster.topology
        if self._steered and topo is not None:
            with contextlib.suppress(BenchError):
                cluster.run_in(
                    topo.client_node_netns, ["nft", "delete", "table", "ip", _STEER_TABLE], timeout=30
                )
            self._steered = False
        for proc in self._procs.values():
            cluster.stop(proc)
        self._procs.clear()

    def proxies(self, cluster: BenchCluster) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}


@dataclass
class StunnelL4(HostProxies):
    """One stunnel per node namespace; see the module docstring."""

    http_port: int = 15480  # node 1's stunnel listens here (and +1 for iperf3)
    peer_port: int = 15443  # node 2's stunnel listens here (and +1 for iperf3)

    key = "stunnel"
    name = "stunnel L4"
    description = (
        "one stunnel per node namespace, TLS 1.3 mTLS with certificates from the cluster CA and verifyChain; "
        "a DNAT rule in node 1's namespace steers the client pod's traffic into node 1's stunnel"
    )
    idle_scale = True
    # stunnel runs a thread per connection: 10,000 of them measured ~1 GB PSS per side and a minute to
    # open on the 2-core machine, so its scale row holds 1,000 (the KiB per connection compares).
    idle_max: int | None = 1_000

    def _conf(self, cluster: BenchCluster, side: str, prefix: Path) -> str:
        topo = cluster.topology
        assert topo is not None
        lines = [STUNNEL_GLOBAL.format(log=cluster.dir / f"stunnel-{side}.log")]
        for name, offset, upstream in (("http", 0, HTTP_PORT), ("iperf3", 1, IPERF_PORT)):
            if side == "client":
                accept = f"{topo.client_node_ip}:{self.http_port + offset}"
                connect = f"{topo.server_node_ip}:{self.peer_port + offset}"
            else:
                accept = f"{topo.server_node_ip}:{self.peer_port + offset}"
                connect = f"{topo.server_ip}:{upstream}"
            lines.append(
                stunnel_service(
                    name,
                    client=side == "client",
                    accept=accept,
                    connect=connect,
                    prefix=prefix,
                    ca=cluster.ca_dir / "root-cert.pem",
                )
            )
        return "\n".join(lines)

    def setup(self, cluster: BenchCluster) -> None:
        topo = cluster.topology
        assert topo is not None
        for side in ("client", "server"):
            prefix = issue_certificate(cluster, side, side)
            conf = cluster.dir / f"stunnel-{side}.conf"
            conf.write_text(self._conf(cluster, side, prefix))
            netns = topo.client_node_netns if side == "client" else topo.server_node_netns
            self.start(
                cluster,
                f"stunnel-{side}",
                netns,
                ["stunnel", str(conf)],
                cluster.dir / f"stunnel-{side}.err",
                cluster.dir / f"stunnel-{side}.log",
            )
        self.wait_listening(cluster, topo.client_node_netns, self.http_port)
        self.wait_listening(cluster, topo.server_node_netns, self.peer_port)
        self.steer(
            cluster,
            [
                (topo.server_ip, port, self.http_port + offset)
                for offset, port in ((0, HTTP_PORT), (1, IPERF_PORT))
            ],
        )

    def idle_capacity(self, nofile: int) -> int:
        return (nofile - 256) // 2  # two descriptors per connection: the accepted one and the onward one
