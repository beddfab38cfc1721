"""`ambit demo`: a 3-node ambient cluster running Istio's bookinfo, shown to a newcomer.

It brings the cluster up as a user would (`ambit up`: it detaches the runtime daemon), then drives it
through :class:`~ambit.runtime.handle.ClusterHandle` (apply the samples, label the namespace, exec
curl in the pods and in the nodes) and proves what happened:

* who talked to whom, over which nodes, with which verified SPIFFE identities (from the destination
  ztunnels' `istio_tcp_connections_opened_total`, the same numbers Prometheus would scrape);
* that nothing crossed nodes in plaintext: a packet capture on the fabric bridge (inside the cluster's
  own fabric namespace) while the traffic ran, summarised by TCP port, and a unique marker that every
  request carried, searched for in the captured bytes (it must never be found).

:meth:`Demo.collect` returns all of it as a :class:`DemoResult`; :func:`problems` is the pure check of
its success criteria (every pair talked over mTLS, only :data:`~ambit.runtime.layout.FABRIC_PORTS` on
the fabric, the marker never found), used by `ambit demo` and by its e2e test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ambit.runtime import pcap
from ambit.runtime.handle import ClusterHandle, HandleError
from ambit.runtime.layout import FABRIC_PORTS, HBONE_PORT
from ambit.runtime.nsexec import NetnsError

AMBIT = str(Path(sys.executable).parent / "ambit")
NODES = ("node1", "node2", "node3")
NAMESPACE = "default"
# (source app, URL): each one a pair that must talk over the mesh.
CALLS = (
    ("curl", "http://productpage:9080/productpage"),
    ("productpage", "http://details:9080/details/0"),
    ("productpage", "http://reviews:9080/reviews/0"),
    ("reviews", "http://ratings:9080/ratings/0"),
)
MUTUAL_TLS = "mutual_tls"
_METRIC = re.compile(r"^istio_tcp_connections_opened_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


class DemoError(RuntimeError):
    pass


@dataclass(frozen=True)
class Call:
    """One request from a source pod, as the destination app echoed it."""

    source: str  # the source pod's workload (its Deployment)
    url: str
    answered_by: str  # the answering pod
    answered_workload: str  # its Deployment
    node: str  # the answering pod's node
    peer: str  # the source address the app saw
    marker_seen: bool  # the app received the marker header


@dataclass(frozen=True)
class Talker:
    """A row of a destination ztunnel's connection metric."""

    source: str
    destination: str
    node: str  # the destination ztunnel's node
    principal: str
    security: str
    connections: int


@dataclass
class DemoResult:
    marker: str
    calls: list[Call] = field(default_factory=list)
    talkers: list[Talker] = field(default_factory=list)
    ports: Counter[int] = field(default_factory=Counter)  # packets on the fabric per service port
    captured_bytes: int = 0
    marker_found: bool = False


POD_TEMPLATE_HASH = "pod-template-hash"


def workload(pod_name: str, template_hash: str = "") -> str:
    """The owning Deployment the metrics name (reviews-v1) from a Deployment pod's name
    (``<deployment>-<pod-template-hash>-<suffix>``): without its suffix and, when known, its hash."""
    base = pod_name.rsplit("-", 1)[0]
    if template_hash and base.endswith(f"-{template_hash}"):
        return base[: -len(template_hash) - 1]
    return base


def workload_of(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return workload(str(meta.get("name")), str((meta.get("labels") or {}).get(POD_TEMPLATE_HASH) or ""))


def problems(result: DemoResult) -> list[str]:
    """What breaks the demo's promises (empty: all kept)."""
    found = []
    for call in result.calls:
        if not call.marker_seen:
            found.append(f"{call.source} -> {call.url}: the app did not receive the marker")
    pairs = {(t.source, t.destination) for t in result.talkers if t.security == MUTUAL_TLS and t.connections}
    for call in result.calls:
        if (call.source, call.answered_workload) not in pairs:
            found.append(f"{call.source} -> {call.answered_workload}: no mTLS connection in the metrics")
    if not result.calls:
        found.append("no call was made")
    if not result.ports[HBONE_PORT]:
        found.append(f"no packet on port {HBONE_PORT} (HBONE) was captured")
    off = {port: n for port, n in result.ports.items() if port not in FABRIC_PORTS}
    if off:
        found.append(f"packets on ports outside {sorted(FABRIC_PORTS)} between nodes: {off}")
    if result.marker_found:
        found.append(f"the marker {result.marker} crossed the fabric in plaintext")
    return found


@dataclass
class Demo:
    cluster: str
    samples: Path
    console: Console

    @property
    def handle(self) -> ClusterHandle:
        return ClusterHandle(self.cluster)

    def step(self, text: str) -> None:
        self.console.print(f"\n[bold cyan]▶ {text}[/]")

    # ------------------------------------------------------------------ the story

    def run(self) -> DemoResult:
        """The whole demo, printed; raises DemoError if a promise was broken."""
        result = self.collect()
        found = problems(result)
        if found:
            raise DemoError("\n".join(found))
        self.farewell()
        return result

    def farewell(self) -> None:
        """Where to look next, and how to stop the cluster."""
        self.console.print(
            "\n[bold green]Done.[/] Look around:\n"
            f"  ambit --cluster {self.cluster} status\n"
            f"  ambit --cluster {self.cluster} get pods -o wide\n"
            f"  ambit --cluster {self.cluster} ztunnel-config workloads --node node1\n"
            f"  ambit --cluster {self.cluster} exec --node node1 -- curl -s localhost:15020/metrics\n"
            f"  ambit --cluster {self.cluster} exec --node node1 -- curl -s localhost:15000/config_dump\n"
            f"Stop it with:\n  ambit --cluster {self.cluster} down"
        )

    def collect(self) -> DemoResult:
        """Bring the cluster up, run bookinfo in the mesh, send the traffic under a fabric capture."""
        if shutil.which("tcpdump") is None:
            raise DemoError("tcpdump is missing (make demo installs it; or: apt-get install tcpdump)")
        result = DemoResult(marker=f"ambit-demo-{uuid.uuid4().hex}")
        self.step(f"ambit --cluster {self.cluster} up --nodes 3")
        self.console.print(self.up().strip())
        self.step("apply Istio's bookinfo and curl samples (unchanged), then enrol the namespace")
        for sample in ("bookinfo.yaml", "curl.yaml"):
            self.handle.apply((self.samples / sample).read_text(), namespace=NAMESPACE)
        self.wait_ready()
        self.handle.set_ambient(NAMESPACE, True)
        self.console.print(f"namespace/{NAMESPACE} labeled istio.io/dataplane-mode=ambient")
        self.wait_enrolled()
        self.console.print("\n".join(self.handle.status().lines()))
        capture = Path(tempfile.mkdtemp(prefix="ambit-demo-")) / "fabric.pcap"
        self.step("capture every packet on the fabric (the wire between nodes) while traffic runs")
        tcpdump = self.start_capture(capture)
        try:
            result.calls = self.send_traffic(result.marker)
        finally:
            pcap.stop(tcpdump)
        self.step("who talked: the destination ztunnels' view (verified peer identities)")
        result.talkers = self.talkers()
        self.show_talkers(result.talkers)
        self.step("what crossed the fabric, by TCP port")
        summary = pcap.summarise(capture)
        result.ports = summary.by_port()
        result.captured_bytes = len(summary.raw)
        result.marker_found = summary.contains(result.marker)
        self.show_capture(result)
        if not problems(result):
            shutil.rmtree(capture.parent, ignore_errors=True)
        return result

    # ------------------------------------------------------------------ steps

    def up(self) -> str:
        """`ambit up --nodes 3` (a subprocess: it detaches the runtime daemon and waits for the pods)."""
        proc = subprocess.run(
            [AMBIT, "--cluster", self.cluster, "up", "--nodes", "3"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise DemoError(f"`ambit up --nodes 3` failed:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def pods(self) -> list[dict[str, Any]]:
        return self.handle.pods(NAMESPACE)

    def wait_ready(self, within: float = 180.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            pods = self.pods()
            if pods and all(_ready(p) for p in pods):
                return
            time.sleep(1.0)
        raise DemoError("the bookinfo pods did not become ready in time (see `ambit status`)")

    def wait_enrolled(self, within: float = 120.0) -> None:
        """Until `ambit status` shows every pod of the namespace enrolled *and* each one is captured and
        served by its node's ztunnel (the label alone is seen at once; capture and the ZDS handoff follow)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            enrolled = self.handle.status().ambient(NAMESPACE)
            if enrolled and all(enrolled.values()):
                meshed = self.handle.meshed(NAMESPACE)
                if meshed and all(v is True for v in meshed.values()):
                    return
            time.sleep(1.0)
        raise DemoError("the namespace's pods were not enrolled in time (see `ambit status`)")

    def pod(self, app: str) -> dict[str, Any]:
        for p in self.pods():
            if p["metadata"].get("labels", {}).get("app") == app:
                return p
        raise DemoError(f"no pod with app={app}")

    def exec(self, argv: list[str], *, pod: str | None = None, node: str | None = None) -> str:
        try:
            return self.handle.exec(argv, pod=pod, namespace=NAMESPACE, node=node, timeout=180).stdout
        except (NetnsError, HandleError) as exc:
            raise DemoError(str(exc)) from exc

    def send_traffic(self, marker: str) -> list[Call]:
        calls = []
        by_name = {str(p["metadata"]["name"]): p for p in self.pods()}
        for source, url in CALLS:
            source_pod = self.pod(source)
            name = source_pod["metadata"]["name"]
            argv = ["curl", "-sS", "-m", "5", "-H", f"X-Demo-Marker: {marker}", url]
            for _ in range(3):
                body = json.loads(self.exec(argv, pod=name))
            answered = str(body["pod"])
            call = Call(
                source=workload_of(source_pod),
                url=url,
                answered_by=answered,
                answered_workload=workload_of(by_name[answered])
                if answered in by_name
                else workload(answered),
                node=str(body["node"]),
                peer=str(body["peer"]).rsplit(":", 1)[0],
                marker_seen=body.get("headers", {}).get("X-Demo-Marker") == marker,
            )
            calls.append(call)
            self.console.print(f"  {source} → {url}", soft_wrap=True)
            self.console.print(
                f"    answered by {call.answered_by} ({call.node}), peer {call.peer}",
                soft_wrap=True,
            )
        return calls

    def start_capture(self, path: Path) -> subprocess.Popen[bytes]:
        try:
            return pcap.start(self.cluster, path)
        except pcap.CaptureError as exc:
            raise DemoError(str(exc)) from exc

    def talkers(self) -> list[Talker]:
        """Every destination-reported connection metric of every node's ztunnel."""
        found = []
        for node in NODES:
            text = self.exec(["curl", "-s", "-m", "5", "http://127.0.0.1:15020/metrics"], node=node)
            for line in text.splitlines():
                match = _METRIC.match(line)
                if not match:
                    continue
                labels = dict(_LABEL.findall(match["labels"]))
                if labels.get("reporter") != "destination":
                    continue
                found.append(
                    Talker(
                        source=labels.get("source_workload", "?"),
                        destination=labels.get("destination_workload", "?"),
                        node=node,
                        principal=labels.get("source_principal", ""),
                        security=labels.get("connection_security_policy", ""),
                        connections=int(float(match["value"])),
                    )
                )
        return found

    def show_talkers(self, talkers: list[Talker]) -> None:
        """One line per pair, then its verified identity whole on a line of its own (a table would wrap
        or cut a SPIFFE id at 80 columns)."""
        nodes = {workload_of(p): p["spec"].get("nodeName") for p in self.pods()}
        for t in talkers:
            security = "mTLS" if t.security == MUTUAL_TLS else t.security
            self.console.print(
                f"  {t.source} ({nodes.get(t.source, '?')}) → {t.destination} ({t.node}): "
                f"{t.connections} connection(s), {security}",
                soft_wrap=True,
            )
            self.console.print(f"    verified peer {t.principal}", soft_wrap=True, highlight=False)

    def show_capture(self, result: DemoResult) -> None:
        table = Table("port", "packets")
        for port, count in result.ports.most_common():
            table.add_row(pcap.port_name(port), str(count))
        self.console.print(table)
        found = result.marker_found
        plaintext = sum(c for port, c in result.ports.items() if port not in FABRIC_PORTS)
        verdict = "[bold red]FOUND (plaintext leak!)[/]" if found else "[bold green]never found[/]"
        self.console.print(f"marker {result.marker}", soft_wrap=True)
        self.console.print(f"  searched in {result.captured_bytes} captured bytes: {verdict}")
        self.console.print(f"packets on other ports between nodes: {plaintext}")


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def samples_dir() -> Path:
    """Istio's samples beside the repository (../shared/samples/istio)."""
    repo = Path(__file__).resolve().parents[3]
    return repo.parent / "shared" / "samples" / "istio"
