"""The host binaries ambit and its tests run, each with who runs it: the one declared list.

`scripts/sysdeps.sh` installs every one (its ``WANT`` table maps each to a Debian package);
``tests/unit/runtime/test_sysdeps.py`` holds the table to this list and, in CI, finds each on PATH.
A new ``subprocess`` argv, ``ambit exec ... -- TOOL`` in a test or ``shutil.which`` adds its binary here.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from typing import Final

RUNTIME: Final[Mapping[str, str]] = {
    "ip": "runtime: namespaces, veths, addresses, routes (netns, capture, nsexec, hostcheck)",
    "nft": "runtime: capture and kube-proxy rules (netns, capture, hostcheck)",
    "sysctl": "runtime: forwarding and rp_filter in each namespace (netns)",
    "tcpdump": "runtime.pcap and `ambit demo`: the fabric capture",
    "curl": "`ambit demo`: requests from inside the pods",
    "sleep": "Istio's curl sample and the test workloads run `sleep` as their container command",
}
BENCH: Final[Mapping[str, str]] = {
    "nginx": "bench mesh: the HTTP upstream",
    "wrk": "bench mesh: the HTTP load",
    "iperf3": "bench mesh: bulk throughput",
    "stunnel": "bench mesh: the TLS tunnel ambit is compared with",
    "prlimit": "bench mesh: the descriptor limit of the processes it starts in the namespaces",
    "ss": "bench mesh: waits until stunnel listens",
    "setpriv": "bench controlplane: its children get SIGTERM when it dies (--pdeathsig)",
}
TESTS: Final[Mapping[str, str]] = {
    "openssl": "unit tests: read certificates written by `ambit ca` with an independent parser",
    "node": "interop tests: Node.js's http2 and tls as the other HBONE implementation",
    "curl": "e2e tests: requests from inside the pods and ztunnels' admin ports",
    "sh": "e2e tests: a request loop inside a pod (`ambit exec ... -- sh -c`)",
    "python3": "e2e tests: a held connection inside a pod (`ambit exec ... -- python3 -c`)",
    "ip": "e2e tests: the namespaces left over and the node's addresses",
    "nft": "e2e tests: the rules in the namespaces",
    "sysctl": "e2e tests: the sysctls in the namespaces",
    "tcpdump": "e2e tests: the fabric capture",
    "sleep": "e2e tests: a process in a pod's namespace",
}
REQUIRED: Final[frozenset[str]] = frozenset({*RUNTIME, *BENCH, *TESTS})


def missing(binaries: Iterable[str]) -> list[str]:
    """Those of ``binaries`` not on PATH, in order."""
    return [name for name in binaries if shutil.which(name) is None]
