"""Memory per idle tunnelled connection, in process (loopback mesh, real TLS, no namespaces).

    .venv/bin/python scripts/profile_idle.py 2000          # RSS growth per connection
    .venv/bin/python scripts/profile_idle.py 1000 trace    # plus the top allocation sites (tracemalloc)

The RSS growth covers everything one connection keeps alive in this process: the client's socket, both
ztunnels' state for it, and the app's socket (tracemalloc's own bookkeeping inflates RSS, so read RSS
from a run without it).
"""

from __future__ import annotations

import gc
import logging
import resource
import sys
import tracemalloc

import uvloop

from ambit.net.duplex import TcpDuplex
from ambit.testing.ztunnel_mesh import APP_PORT, client_and_server, echo


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


async def main(n: int, trace: bool) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (20_000, 20_000))
    mesh = await client_and_server()
    held: list[TcpDuplex] = []

    async def hold() -> None:
        c = await mesh.sockets.capture_connect(mesh.ip(1), (mesh.ip(2), APP_PORT), (mesh.ip(1), 15001))
        await echo(c, b"x")
        held.append(c)

    for _ in range(50):
        await hold()
    gc.collect()
    before = rss_kib()
    if trace:
        tracemalloc.start(12)
    first = tracemalloc.take_snapshot() if trace else None
    for _ in range(n):
        await hold()
    gc.collect()
    print(f"{n} idle connections: RSS +{(rss_kib() - before) / n:.1f} KiB per connection")
    if first is not None:
        stats = tracemalloc.take_snapshot().compare_to(first, "lineno")
        print(f"python heap +{sum(s.size_diff for s in stats) / n / 1024:.2f} KiB per connection")
        for s in stats[:30]:
            print(f"{s.size_diff / n:8.0f} B/conn {s.count_diff / n:5.1f} obj  {s.traceback[0]}")
    await mesh.close()


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    uvloop.run(main(int(sys.argv[1]), len(sys.argv) > 2))
