"""Per-request cost of the ztunnel pair on a kept-alive connection, in process (loopback mesh, real TLS).

    .venv/bin/python scripts/profile_requests.py 5000            # CPU per round trip
    .venv/bin/python scripts/profile_requests.py 3000 tottime    # the same under cProfile, sorted

One client connection at pod 1 goes to pod 2's echo app through both ztunnels (a pooled HBONE
tunnel); each round trip writes 1 KiB and reads the echo. CPU counts both ztunnels, the client and the
app (one process, one loop); the Python calls per round trip are cProfile's count divided by N.
"""

from __future__ import annotations

import cProfile
import logging
import pstats
import sys
import time

import uvloop

from ambit.testing.ztunnel_mesh import APP_PORT, client_and_server, echo


async def main(n: int, sort: str | None) -> None:
    mesh = await client_and_server()
    client = await mesh.sockets.capture_connect(mesh.ip(1), (mesh.ip(2), APP_PORT), (mesh.ip(1), 15001))
    payload = b"x" * 1024
    for _ in range(200):  # warm up
        await echo(client, payload)
    profile = cProfile.Profile() if sort else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    for _ in range(n):
        await echo(client, payload)
    if profile is not None:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{n} round trips: {cpu / n * 1e6:.1f} µs CPU and {wall / n * 1e6:.1f} µs wall per round trip")
    if profile is not None:
        stats = pstats.Stats(profile)
        print(f"{stats.total_calls / n:.0f} Python calls per round trip")  # type: ignore[attr-defined]
        stats.sort_stats(sort).print_stats(30)
    client.close()
    await mesh.close()


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    uvloop.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
