"""Hold many idle kept-alive HTTP connections: ``python -m ambit.bench.mesh_idle HOST PORT PATH COUNT``.

Run by ``ambit bench mesh`` inside the client pod's namespace (so every connection goes through whatever
the configuration puts on the path). It raises its own RLIMIT_NOFILE, opens COUNT connections (a bounded
number at a time), sends one kept-alive ``GET PATH`` on each and reads the whole response, so every
connection has carried a request end to end through the proxies. Then it prints one JSON line
(``{"open": n, "failed": f, "seconds": s, "errors": {...}}``) and holds every connection, idle, until its
stdin reaches EOF (the parent's signal), and closes them.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter

CONCURRENCY = 200
TIMEOUT = 30.0


def _raise_nofile(needed: int) -> None:
    """Soft limit up to what is needed, never past the hard limit (raising that needs CAP_SYS_RESOURCE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _open_one(
    host: str, port: int, request: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise ConnectionError(f"status {status.decode(errors='replace')}")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _main(host: str, port: int, path: str, count: int) -> int:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode()
    slots = asyncio.Semaphore(CONCURRENCY)
    held: list[asyncio.StreamWriter] = []
    errors: Counter[str] = Counter()

    async def one() -> None:
        async with slots:
            try:
                _reader, writer = await asyncio.wait_for(_open_one(host, port, request), TIMEOUT)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
                errors[type(exc).__name__ + (f": {exc}" if isinstance(exc, ConnectionError) else "")] += 1
                return
            held.append(writer)

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    report = {
        "open": len(held),
        "failed": count - len(held),
        "seconds": round(time.monotonic() - started, 3),
        "errors": dict(errors.most_common(5)),
    }
    print(json.dumps(report), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)  # until EOF
    for writer in held:
        writer.close()
    return 0


def main(argv: list[str]) -> int:
    host, port, path, count = argv[0], int(argv[1]), argv[2], int(argv[3])
    _raise_nofile(count + 1024)
    return asyncio.run(_main(host, port, path, count))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
