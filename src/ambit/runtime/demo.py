"""`ambit demo`: a 3-node ambient cluster running Istio's bookinfo, shown to a newcomer.

It drives the same commands a user would type (`ambit up`, `apply`, `label`, `exec`), then proves
what happened:

* who talked to whom, over which nodes, with which verified SPIFFE identities (from the destination
  ztunnels' `istio_tcp_connections_opened_total`, the same numbers Prometheus would scrape);
* that nothing crossed nodes in plaintext: a packet capture on the fabric bridge (inside the cluster's
  own fabric namespace) while the traffic ran, summarised by TCP port, and a unique marker that every
  request carried, searched for in the captured bytes (it must never be found).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ambit.runtime import pcap

AMBIT = str(Path(sys.executable).parent / "ambit")
_METRIC = re.compile(r"^istio_tcp_connections_opened_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


class DemoError(RuntimeError):
    pass


@dataclass
class Demo:
    cluster: str
    samples: Path
    console: Console

    def ambit(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 180) -> str:
        proc = subprocess.run(
            [AMBIT, "--cluster", self.cluster, *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise DemoError(f"`ambit {' '.join(args)}` failed:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def step(self, text: str) -> None:
        self.console.print(f"\n[bold cyan]▶ {text}[/]")

    # ------------------------------------------------------------------ the story

    def run(self) -> None:
        if shutil.which("tcpdump") is None:
            raise DemoError("tcpdump is missing (make demo installs it; or: apt-get install tcpdump)")
        marker = f"ambit-demo-{uuid.uuid4().hex}"
        self.step(f"ambit --cluster {self.cluster} up --nodes 3")
        self.console.print(self.ambit("up", "--nodes", "3", timeout=300).strip())
        self.step("apply Istio's bookinfo and curl samples (unchanged), then enrol the namespace")
        for sample in ("bookinfo.yaml", "curl.yaml"):
            self.ambit("apply", "-f", str(self.samples / sample))
        self.wait_ready()
        self.console.print(
            self.ambit("label", "namespace", "default", "istio.io/dataplane-mode=ambient").strip()
        )
        self.wait_enrolled()
        self.console.print(self.ambit("status").rstrip())
        capture = Path(tempfile.mkdtemp(prefix="ambit-demo-")) / "fabric.pcap"
        self.step("capture every packet on the fabric (the wire between nodes) while traffic runs")
        tcpdump = self.start_capture(capture)
        try:
            self.send_traffic(marker)
        finally:
            self.stop_capture(tcpdump)
        self.step("who talked: the destination ztunnels' view (verified peer identities)")
        self.show_talkers()
        self.step("what crossed the fabric, by TCP port")
        self.show_capture(capture, marker)
        self.console.print(
            "\n[bold green]Done.[/] Look around:\n"
            f"  ambit --cluster {self.cluster} status\n"
            f"  ambit --cluster {self.cluster} get pods -o wide\n"
            f"  ambit --cluster {self.cluster} ztunnel-config workloads --node node1\n"
            f"  ambit --cluster {self.cluster} exec --node node1 -- curl -s localhost:15020/metrics\n"
            f"  ambit --cluster {self.cluster} exec --node node1 -- curl -s localhost:15000/config_dump\n"
            f"Stop it with:\n  ambit --cluster {self.cluster} down"
        )

    # ------------------------------------------------------------------ steps

    def pods(self) -> list[dict[str, Any]]:
        data = json.loads(self.ambit("get", "pods", "-n", "default", "-o", "json"))
        return list(data.get("items", []))

    def wait_ready(self, within: float = 180.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            pods = self.pods()
            if pods and all(_ready(p) for p in pods):
                return
            time.sleep(1.0)
        raise DemoError("the bookinfo pods did not become ready in time (see `ambit status`)")

    def wait_enrolled(self, within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status = self.ambit("status")
            rows = [line for line in status.splitlines() if line.strip().startswith("default ")]
            if rows and all(line.split()[-1] == "yes" for line in rows):
                return
            time.sleep(1.0)
        raise DemoError("the namespace's pods were not enrolled in time (see `ambit status`)")

    def pod(self, app: str) -> dict[str, Any]:
        for p in self.pods():
            if p["metadata"].get("labels", {}).get("app") == app:
                return p
        raise DemoError(f"no pod with app={app}")

    def exec_curl(self, app: str, url: str, marker: str) -> str:
        name = self.pod(app)["metadata"]["name"]
        return self.ambit("exec", name, "--", "curl", "-sS", "-m", "5", "-H", f"X-Demo-Marker: {marker}", url)

    def send_traffic(self, marker: str) -> None:
        calls = [
            ("curl", "http://productpage:9080/productpage"),
            ("productpage", "http://details:9080/details/0"),
            ("productpage", "http://reviews:9080/reviews/0"),
            ("reviews", "http://ratings:9080/ratings/0"),
        ]
        for source, url in calls:
            for _ in range(3):
                body = json.loads(self.exec_curl(source, url, marker))
            seen = body.get("headers", {}).get("X-Demo-Marker")
            if seen != marker:
                raise DemoError(f"{source} -> {url}: the app did not receive the marker")
            self.console.print(
                f"  {source:12} → {url:38} answered by {body['pod']} on {body['node']} "
                f"(the app saw peer {body['peer'].rsplit(':', 1)[0]})"
            )

    def start_capture(self, path: Path) -> subprocess.Popen[bytes]:
        try:
            return pcap.start(self.cluster, path)
        except pcap.CaptureError as exc:
            raise DemoError(str(exc)) from exc

    def stop_capture(self, proc: subprocess.Popen[bytes]) -> None:
        pcap.stop(proc)

    def show_talkers(self) -> None:
        # The metric names the owning Deployment (reviews-v1): the pod name without its suffix.
        workloads = {p["metadata"]["name"].rsplit("-", 1)[0]: p["spec"].get("nodeName") for p in self.pods()}
        identity = "verified source (spiffe://cluster.local/…)"
        table = Table("source", "node", "destination", "node", identity, "mTLS", "n")
        for node in ("node1", "node2", "node3"):
            text = self.ambit(
                "exec", "--node", node, "--", "curl", "-s", "-m", "5", "http://127.0.0.1:15020/metrics"
            )
            for line in text.splitlines():
                match = _METRIC.match(line)
                if not match:
                    continue
                labels = dict(_LABEL.findall(match["labels"]))
                if labels.get("reporter") != "destination":
                    continue
                src, dst = labels.get("source_workload", "?"), labels.get("destination_workload", "?")
                table.add_row(
                    src,
                    workloads.get(src, "?"),
                    dst,
                    node,
                    labels.get("source_principal", "").removeprefix("spiffe://cluster.local/"),
                    labels.get("connection_security_policy", ""),
                    str(int(float(match["value"]))),
                )
        self.console.print(table)

    def show_capture(self, path: Path, marker: str) -> None:
        summary = pcap.summarise(path)
        ports = summary.by_port()
        table = Table("port", "packets")
        for port, count in ports.most_common():
            table.add_row(pcap.port_name(port), str(count))
        self.console.print(table)
        found = summary.contains(marker)
        plaintext = sum(c for port, c in ports.items() if port not in (pcap.HBONE_PORT, pcap.XDS_PORT))
        verdict = "[bold red]FOUND (plaintext leak!)[/]" if found else "[bold green]never found[/]"
        self.console.print(f"marker {marker} in {len(summary.raw)} captured bytes: {verdict}")
        self.console.print(f"packets on other ports between nodes: {plaintext}")
        if found or plaintext:
            raise DemoError("something crossed the fabric in plaintext")
        shutil.rmtree(path.parent, ignore_errors=True)


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def samples_dir() -> Path:
    """Istio's samples beside the repository (../shared/samples/istio)."""
    repo = Path(__file__).resolve().parents[3]
    return repo.parent / "shared" / "samples" / "istio"
