"""The configurations ``ambit bench mesh`` compares: each one a row, with its own set-up and teardown.

Every configuration carries the same traffic between the same two pods (client on node 1, server on
node 2); only what sits on the path changes. A configuration names the proxy processes that carry that
traffic (their CPU and memory are its cost) and whether the idle-connection scale test applies to it.
A future L7 row (through a waypoint) is one more subclass of `Configuration` in `CONFIGURATIONS`.

* `NoMesh`: the pods are not enrolled; the ztunnels run but carry nothing.
* `AmbitL4`: the namespace is labelled ``istio.io/dataplane-mode=ambient``: the client pod's traffic is
  captured to node 1's ztunnel, carried over HBONE (mTLS, HTTP/2 CONNECT) to node 2's ztunnel and
  delivered to the server pod.
* `StunnelL4`: one stunnel per node namespace, TLS 1.3 with mutual authentication, certificates from the
  cluster's own CA (``ambit ca issue``) and ``verifyChain``. A DNAT rule in node 1's namespace steers the
  client pod's traffic to the server pod's ports into node 1's stunnel, which connects to node 2's
  stunnel, which connects to the server pod.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass, field

from ambit.bench.mesh_cluster import HTTP_PORT, IPERF_PORT, NAMESPACE, BenchCluster, BenchError, nofile_limit
from ambit.bench.mesh_cost import tree


class Configuration:
    """One row of the comparison. Subclasses override what differs."""

    key = ""  # short id used in tables and ratios
    name = ""  # shown in the tables
    description = ""  # one sentence for the methodology note
    idle_scale = False  # run the idle-connection scale test in this configuration
    idle_max: int | None = None  # hold at most this many there (None: the plan's count)

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


_STUNNEL_GLOBAL = """\
foreground = yes
pid =
debug = 3
output = {log}
"""

_STUNNEL_SERVICE = """\
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


@dataclass
class StunnelL4(Configuration):
    """One stunnel per node namespace; see the module docstring."""

    http_port: int = 15480  # node 1's stunnel listens here (and +1 for iperf3)
    peer_port: int = 15443  # node 2's stunnel listens here (and +1 for iperf3)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _steered: bool = False

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

    def _conf(self, cluster: BenchCluster, side: str) -> str:
        topo = cluster.topology
        assert topo is not None
        ca = cluster.ca_dir / "root-cert.pem"
        prefix = cluster.dir / side
        lines = [_STUNNEL_GLOBAL.format(log=cluster.dir / f"stunnel-{side}.log")]
        for name, offset, upstream in (("http", 0, HTTP_PORT), ("iperf3", 1, IPERF_PORT)):
            if side == "client":
                accept = f"{topo.client_node_ip}:{self.http_port + offset}"
                connect = f"{topo.server_node_ip}:{self.peer_port + offset}"
            else:
                accept = f"{topo.server_node_ip}:{self.peer_port + offset}"
                connect = f"{topo.server_ip}:{upstream}"
            lines.append(
                _STUNNEL_SERVICE.format(
                    name=name,
                    client="client = yes\n" if side == "client" else "",
                    accept=accept,
                    connect=connect,
                    cert=f"{prefix}-cert.pem",
                    key=f"{prefix}-key.pem",
                    ca=ca,
                )
            )
        return "\n".join(lines)

    def setup(self, cluster: BenchCluster) -> None:
        topo = cluster.topology
        assert topo is not None
        for side in ("client", "server"):
            identity = f"spiffe://cluster.local/ns/{NAMESPACE}/sa/{side}"
            cluster.ambit(
                "ca",
                "issue",
                "--dir",
                str(cluster.ca_dir),
                "--identity",
                identity,
                "--out",
                str(cluster.dir / side),
            )
            conf = cluster.dir / f"stunnel-{side}.conf"
            conf.write_text(self._conf(cluster, side))
            netns = topo.client_node_netns if side == "client" else topo.server_node_netns
            self._procs[side] = cluster.start_in(
                netns, ["stunnel", str(conf)], nofile=nofile_limit(), log=cluster.dir / f"stunnel-{side}.err"
            )
        self._wait_listening(cluster, topo.client_node_netns, self.http_port)
        self._wait_listening(cluster, topo.server_node_netns, self.peer_port)
        rules = "\n".join(
            f"ip saddr {topo.client_ip} ip daddr {topo.server_ip} tcp dport {port} "
            f"dnat to {topo.client_node_ip}:{self.http_port + offset}"
            for offset, port in ((0, HTTP_PORT), (1, IPERF_PORT))
        )
        script = (
            f"table ip {_STEER_TABLE} {{\n chain pre {{\n  type nat hook prerouting priority dstnat - 5; "
            f"policy accept;\n  {rules}\n }}\n}}\n"
        )
        (cluster.dir / "steer.nft").write_text(script)
        self._steered = True
        cluster.run_in(topo.client_node_netns, ["nft", "-f", str(cluster.dir / "steer.nft")], timeout=30)

    def _wait_listening(self, cluster: BenchCluster, netns: str, port: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            out = cluster.run_in(netns, ["ss", "-Hltn", f"sport = :{port}"], timeout=10)
            if out.strip():
                return
            for side, proc in self._procs.items():
                if proc.poll() is not None:
                    log = "".join(
                        path.read_text(errors="replace")[-2000:]
                        for path in (cluster.dir / f"stunnel-{side}.log", cluster.dir / f"stunnel-{side}.err")
                        if path.exists()
                    )
                    raise BenchError(f"stunnel ({side}) exited with {proc.returncode}:\n{log}")
            if time.monotonic() > deadline:
                raise BenchError(f"stunnel is not listening on port {port} in {netns} after {timeout:.0f} s")
            time.sleep(0.1)

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

    def idle_capacity(self, nofile: int) -> int:
        return (nofile - 256) // 2  # two descriptors per connection: the accepted one and the onward one

    def proxies(self, cluster: BenchCluster) -> dict[str, int]:
        return {f"stunnel-{side}": proc.pid for side, proc in self._procs.items()}


CONFIGURATIONS: tuple[type[Configuration], ...] = (NoMesh, AmbitL4, StunnelL4)
