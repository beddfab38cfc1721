"""Per-connection cost of the ztunnel pair, in process (loopback mesh, real TLS, no namespaces).

    .venv/bin/python scripts/profile_connections.py 400            # CPU and wall per connection
    .venv/bin/python scripts/profile_connections.py 300 tottime    # the same under cProfile, sorted

Each connection: a client at pod 1 connects to pod 2's app through both ztunnels (a pooled HBONE
tunnel), sends 100 bytes, reads the echo, half-closes and reads to EOF. CPU counts both ztunnels, the
client and the app (one process, one loop).
"""

from __future__ import annotations

import asyncio
import cProfile
import logging
import pstats
import sys
import time

import uvloop

from ambit.testing.ztunnel_mesh import APP_PORT, client_and_server, echo


async def main(n: int, sort: str | None) -> None:
    mesh = await client_and_server()

    async def one() -> None:
        c = await mesh.sockets.capture_connect(mesh.ip(1), (mesh.ip(2), APP_PORT), (mesh.ip(1), 15001))
        assert await echo(c, b"x" * 100) == b"x" * 100
        c.write_eof()
        await asyncio.wait_for(c.read_all(), 5)

    for _ in range(50):
        await one()
    profile = cProfile.Profile() if sort else None
    t0, c0, th0 = time.perf_counter(), time.process_time(), time.thread_time()
    if profile:
        profile.enable()
    for _ in range(n):
        await one()
    if profile:
        profile.disable()
    wall, cpu, thread = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - th0
    print(f"{n} connections: {1e6 * wall / n:.0f} us wall, {1e6 * cpu / n:.0f} us CPU per connection")
    print(f"(loop thread alone: {1e6 * thread / n:.0f} us)")
    await mesh.close()
    if profile:
        pstats.Stats(profile).sort_stats(sort or "tottime").print_stats(50)


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    uvloop.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
