"""Per-request cost of the waypoint's router, in process (no namespaces, no HBONE).

    .venv/bin/python scripts/profile_router.py 5000            # CPU and wall per request
    .venv/bin/python scripts/profile_router.py 3000 tottime    # the same under cProfile, sorted

Each request: a GET handed to ``WaypointRouter.handle`` as a frontend would (routing, L7 policy, rate
limits, telemetry with its access log written to /dev/null), sent over a pooled HTTP/1.1 connection to a
loopback upstream (the router tests' harness, ``tests/integration/waypoint/router_harness.py``), its
response read whole. CPU counts the router, the upstream client and the upstream app (one process).
"""

from __future__ import annotations

import cProfile
import logging
import pstats
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration" / "waypoint"))
from router_harness import CLIENT, App, router_for

from ambit.waypoint.exchange import BodyStream, Request

WARMUP = 200


async def run(n: int) -> tuple[float, float]:
    app = await App().start()
    router = router_for(app)

    async def one() -> None:
        response = await router.handle(Request(b"GET", b"http", b"web", b"/get", [], BodyStream.of()), CLIENT)
        await response.body.read_all(1 << 20)

    try:
        for _ in range(WARMUP):
            await one()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            await one()
        return (time.process_time() - cpu) / n, (time.perf_counter() - wall) / n
    finally:
        await router.close()
        await app.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    sort = sys.argv[2] if len(sys.argv) > 2 else None
    logging.basicConfig(level=logging.INFO, stream=open("/dev/null", "w"))  # noqa: SIM115
    if sort is None:
        cpu, wall = uvloop.run(run(n))
        print(f"{n} requests: CPU {cpu * 1e6:.1f} us, wall {wall * 1e6:.1f} us per request")
        return
    profile = cProfile.Profile()
    profile.enable()
    uvloop.run(run(n))
    profile.disable()
    pstats.Stats(profile).sort_stats(sort).print_stats(30)


if __name__ == "__main__":
    main()
