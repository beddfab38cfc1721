"""The C L7 peer of ``ambit bench mesh``: stunnel → nginx as an HTTP reverse proxy → stunnel.

The same topology as the ambit L7 row (``mesh_waypoint``), with C programs in the proxies' places:

* node 1's namespace: stunnel (client mode) — the ztunnel's place. The client pod's requests to the
  Service's cluster IP are steered to it by a DNAT rule (`HostProxies.steer`, as `StunnelL4`'s);
* node 2's namespace: nginx as an HTTP/1.1 reverse proxy — the waypoint's place. TLS 1.3 in, with the
  client certificate verified against the cluster CA (``ssl_verify_client on``); TLS 1.3 out
  (``proxy_pass https://``) presenting its own certificate (``proxy_ssl_certificate``) over kept-alive
  upstream connections. One worker process (``worker_processes 1``): the waypoint is one single-threaded
  Python process, so both L7 proxies get one core's worth of event loop. Access log off (the waypoint's
  access log is on: it has no switch). nginx does not verify the upstream's certificate
  (``proxy_ssl_verify`` checks a DNS name or IP, and the cluster CA's certificates carry only a SPIFFE
  URI); node 2's stunnel does verify nginx's, and the check would run once per kept-alive connection;
* node 2's namespace: stunnel (server mode) — the destination ztunnel's place — to the server pod.

Every certificate comes from the cluster's own CA (``ambit ca issue``), every stunnel is TLS 1.3 with
``verifyChain``, as in `StunnelL4`. Proof that nginx is on the path: its ``stub_status`` request counter
(a second server, on node 2's address), less the status requests themselves. Cost: the two stunnels and
nginx (master and worker), each its own cost row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ambit.bench.mesh_cluster import HTTP_PORT, BenchCluster, BenchError, nofile_limit
from ambit.bench.mesh_configs import (
    STUNNEL_GLOBAL,
    HostProxies,
    issue_certificate,
    stunnel_service,
    wait_for,
)

NGINX_L7_CONF = """\
worker_processes 1;
pid {dir}/nginx-l7.pid;
error_log {dir}/nginx-l7-error.log warn;
events {{ worker_connections {nofile}; }}
worker_rlimit_nofile {nofile};
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  upstream server_pod {{
    server {upstream};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
  }}
  server {{
    listen {listen} ssl;
    ssl_certificate {prefix}-cert.pem;
    ssl_certificate_key {prefix}-key.pem;
    ssl_protocols TLSv1.3;
    ssl_client_certificate {ca};
    ssl_verify_client on;
    ssl_verify_depth 4;
    location / {{
      proxy_pass https://server_pod;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Connection "";
      proxy_ssl_certificate {prefix}-cert.pem;
      proxy_ssl_certificate_key {prefix}-key.pem;
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_session_reuse on;
    }}
  }}
  server {{
    listen {status};
    location = /status {{ stub_status; }}
  }}
}}
"""


def parse_stub_status(text: str) -> int:
    """The ``requests`` counter of nginx's ``stub_status`` page."""
    match = re.search(r"server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)", text)
    if match is None:
        raise BenchError(f"nginx stub_status: no counters in {text[:200]!r}")
    return int(match.group(3))


@dataclass
class NginxL7(HostProxies):
    """stunnel → nginx (TLS in and out) → stunnel; see the module docstring."""

    client_port: int = 15580  # node 1's stunnel
    nginx_port: int = 15543  # nginx's TLS listener on node 2
    upstream_port: int = 15544  # node 2's stunnel
    status_port: int = 15545  # nginx's stub_status on node 2
    _status_reads: int = 0

    key = "nginx-l7"
    name = "nginx L7"
    description = (
        "the C peer: stunnel in node 1's namespace (the client pod's traffic steered to it by DNAT) → "
        "TLS 1.3 mTLS → nginx in node 2's namespace as an HTTP reverse proxy (1 worker, client "
        "certificates verified, TLS 1.3 out with its own certificate, kept-alive upstream connections) → "
        "stunnel in node 2's namespace → the server pod; addressed to the Service's cluster IP"
    )
    l7 = True

    def setup(self, cluster: BenchCluster) -> None:
        topo = cluster.topology
        assert topo is not None
        ca = cluster.ca_dir / "root-cert.pem"
        nginx = f"{topo.server_node_ip}:{self.nginx_port}"
        upstream = f"{topo.server_node_ip}:{self.upstream_port}"
        sides = (
            ("client", f"{topo.client_node_ip}:{self.client_port}", nginx, topo.client_node_netns),
            ("server", upstream, f"{topo.server_ip}:{HTTP_PORT}", topo.server_node_netns),
        )
        for side, accept, connect, netns in sides:
            prefix = issue_certificate(cluster, side, f"l7-{side}")
            conf = cluster.dir / f"stunnel-l7-{side}.conf"
            log = cluster.dir / f"stunnel-l7-{side}.log"
            service = stunnel_service(
                "http", client=side == "client", accept=accept, connect=connect, prefix=prefix, ca=ca
            )
            conf.write_text(f"{STUNNEL_GLOBAL.format(log=log)}\n{service}")
            self.start(
                cluster, f"stunnel-{side}", netns, ["stunnel", str(conf)], log.with_suffix(".err"), log
            )
        prefix = issue_certificate(cluster, "nginx", "l7-nginx")
        conf = cluster.dir / "nginx-l7.conf"
        conf.write_text(
            NGINX_L7_CONF.format(
                dir=cluster.dir,
                nofile=nofile_limit(),
                upstream=upstream,
                listen=nginx,
                prefix=prefix,
                ca=ca,
                status=f"{topo.server_node_ip}:{self.status_port}",
            )
        )
        self.start(
            cluster,
            "nginx",
            topo.server_node_netns,
            ["nginx", "-c", str(conf), "-g", "daemon off;"],
            cluster.dir / "nginx-l7.err",
            cluster.dir / "nginx-l7-error.log",
        )
        self.wait_listening(cluster, topo.client_node_netns, self.client_port)
        for port in (self.nginx_port, self.status_port, self.upstream_port):
            self.wait_listening(cluster, topo.server_node_netns, port)
        self.steer(cluster, [(topo.server_vip, HTTP_PORT, self.client_port)])
        wait_for("a probe request counted by nginx", lambda: self.probe(cluster), 30)

    def counted_requests(self, cluster: BenchCluster) -> int:
        topo = cluster.topology
        assert topo is not None
        url = f"http://{topo.server_node_ip}:{self.status_port}/status"
        text = cluster.run_in(topo.server_node_netns, ["curl", "-sf", "-m", "5", url], timeout=10)
        self._status_reads += 1  # stub_status counts its own requests too
        return parse_stub_status(text) - self._status_reads

    def on_path(self) -> str:
        return "nginx (stub_status requests)"
