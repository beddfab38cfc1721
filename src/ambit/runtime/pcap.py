"""A packet capture on a cluster's fabric (the wire between its nodes), summarised by TCP port.

:func:`start` runs ``tcpdump`` on the fabric bridge inside the cluster's own fabric namespace (never
the host's), writing every TCP packet, whole, to a pcap file; :func:`stop` ends it; :func:`summarise`
reads the file back: the packets' addresses and ports (``tcpdump -r``), counted by service port
(the lower of the two ports: the other one is the client's ephemeral port), and the raw bytes, to
look for a marker that must never cross the fabric in plaintext. Used by ``ambit demo`` and by the
e2e tests.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ambit.runtime import netplan
from ambit.runtime.layout import FABRIC_PORTS, HBONE_PORT, TOKEN_CA_PORT, XDS_PORT

PORT_NAMES = {
    HBONE_PORT: "15008 (HBONE: mTLS data)",
    XDS_PORT: "15012 (control plane: xDS/CA over mTLS)",
    TOKEN_CA_PORT: "15013 (control plane: CA for pod-token callers, TLS)",
}
_LINE = re.compile(r" (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+):")


class CaptureError(RuntimeError):
    pass


@dataclass(frozen=True)
class Packet:
    src: str
    sport: int
    dst: str
    dport: int

    @property
    def service_port(self) -> int:
        return min(self.sport, self.dport)


@dataclass(frozen=True)
class Summary:
    packets: list[Packet]
    raw: bytes = field(repr=False)

    def by_port(self) -> Counter[int]:
        """Packets per service port."""
        return Counter(p.service_port for p in self.packets)

    def off_fabric(self) -> Counter[int]:
        """Packets per service port outside the runtime's :data:`FABRIC_PORTS` (plaintext between nodes)."""
        return Counter({port: n for port, n in self.by_port().items() if port not in FABRIC_PORTS})

    def contains(self, marker: str | bytes) -> bool:
        """Whether ``marker`` occurs anywhere in the captured bytes."""
        return (marker.encode() if isinstance(marker, str) else marker) in self.raw


def port_name(port: int) -> str:
    return PORT_NAMES.get(port, str(port))


def start(cluster: str, path: Path, *, within: float = 10.0) -> subprocess.Popen[bytes]:
    """Start capturing the TCP on ``cluster``'s fabric bridge into ``path``; returns once tcpdump listens."""
    argv = ["ip", "netns", "exec", netplan.fabric_netns(cluster), "tcpdump", "-i", netplan.BRIDGE]
    # --immediate-mode: without it libpcap hands packets over a ring block at a time, and the packets of
    # a block not yet handed over when tcpdump is stopped are lost (a quiet capture can come out empty).
    argv += ["--immediate-mode", "-nn", "-U", "-s", "0", "-w", str(path), "tcp"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    said = b""
    deadline = time.monotonic() + within
    while b"listening on" not in said:
        left = deadline - time.monotonic()
        if proc.poll() is not None or left <= 0:
            stop(proc)
            raise CaptureError(f"tcpdump did not start: {said.decode(errors='replace').strip()}")
        ready, _, _ = select.select([proc.stderr], [], [], min(left, 0.2))
        if ready:
            said += os.read(proc.stderr.fileno(), 4096)
    return proc


def stop(proc: subprocess.Popen[bytes], *, linger: float = 0.5) -> None:
    """Stop tcpdump (SIGINT, so it flushes the file), after ``linger`` s for packets in flight."""
    if proc.poll() is None:
        time.sleep(linger)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def summarise(path: Path) -> Summary:
    text = subprocess.run(
        ["tcpdump", "-r", str(path), "-nn", "-q", "tcp"], capture_output=True, text=True, check=False
    ).stdout
    packets = [
        Packet(m[1], int(m[2]), m[3], int(m[4])) for line in text.splitlines() if (m := _LINE.search(line))
    ]
    return Summary(packets, path.read_bytes())
