"""The child side of a benchmark process: its configuration, its announcements, and when it stops.

Every benchmark box (target, proxy A, proxy B, load) is a separate OS process started by
``ambit.bench.procs``. The parent writes one JSON line of configuration to the child's stdin and
keeps stdin open; the child answers with JSON lines on stdout (``announce``) and stops when stdin
reaches EOF, so a child never outlives its parent even if the parent is killed. Credentials travel
in that JSON (PEM text), never through files. Logs go to stderr. With ``$AMBIT_BENCH_PROFILE`` set
to a directory, server children run under cProfile and dump ``<name>-<pid>.prof`` there on exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from ambit.identity.certs import TrustBundle, WorkloadCert

JsonObject = dict[str, Any]
Stop = Callable[[], Awaitable[None]]

PROFILE_ENV = "AMBIT_BENCH_PROFILE"  # a directory: server children write a cProfile dump there on exit


def read_config() -> JsonObject:
    """The first line of stdin, as JSON."""
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("no configuration on stdin")
    config = json.loads(line)
    if not isinstance(config, dict):
        raise SystemExit("configuration must be a JSON object")
    return config


def announce(message: JsonObject) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def credential_json(cert: WorkloadCert, bundle: TrustBundle) -> JsonObject:
    return {
        "chain": cert.chain_pem.decode("ascii"),
        "key": cert.key_pem.decode("ascii"),
        "roots": bundle.roots_pem.decode("ascii"),
    }


def credential_from_json(data: JsonObject) -> tuple[WorkloadCert, TrustBundle]:
    cert = WorkloadCert.from_pem(str(data["chain"]).encode("ascii"), str(data["key"]).encode("ascii"))
    return cert, TrustBundle(str(data["roots"]).encode("ascii"))


async def stdin_closed() -> None:
    """Returns once the parent closes our stdin (or dies)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        if not os.read(fd, 4096) and not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)


def serve(start: Callable[[JsonObject], Awaitable[tuple[JsonObject, Stop]]]) -> None:
    """Child main for a server box: start it, announce what it bound, run until stdin closes."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = read_config()

    async def main() -> None:
        info, stop = await start(config)
        announce(info)
        try:
            await stdin_closed()
        finally:
            await stop()

    profile_dir = os.environ.get(PROFILE_ENV)
    if not profile_dir:
        uvloop.run(main())
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(uvloop.run, main())
    finally:
        name = str(config.get("name", "child")).replace(" ", "_").replace("/", "_")
        profiler.dump_stats(os.path.join(profile_dir, f"{name}-{os.getpid()}.prof"))
