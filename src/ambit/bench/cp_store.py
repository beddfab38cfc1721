"""The store box of ``ambit bench controlplane``: one ``StoreServer`` in its own process.

Configuration (JSON on stdin): ``{"directory": "...", "socket": "..."}``. Announces
``{"socket": "..."}`` once it serves; stops (closing the store cleanly) when stdin closes.
Writes are durable as in production (write-ahead log, fsync).
"""

from __future__ import annotations

from pathlib import Path

from ambit.bench.child import JsonObject, Stop, serve
from ambit.store.server import StoreServer


async def start(config: JsonObject) -> tuple[JsonObject, Stop]:
    server = StoreServer(Path(config["directory"]), Path(config["socket"]))
    await server.start()
    return {"socket": str(server.socket_path)}, server.close


if __name__ == "__main__":
    serve(start)
