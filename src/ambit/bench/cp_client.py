"""One proxy of ``ambit bench controlplane``: a real ``XdsClient`` into a ``StateStore``, in its own process.

Configuration (JSON on stdin)::

    {"name": "node-7", "port": 15012, "credential": {chain, key, roots}, "nice": 19}

The process lowers its scheduling priority by ``nice`` (if given; see `lower_priority`), then the client dials
``127.0.0.1:<port>`` over mTLS with the node credential, subscribes to everything (as a ztunnel
does) and reports JSON lines on stdout:

* once synced: ``{"synced": true, "synced_ns", "resources", "responses", "bytes", "rss_kib"}``: the
  initial state (every resource of both types), how many responses and response bytes it took;
* then one line per response: ``{"received_ns", "apply_ns", "t_ns", "apply_cpu_ns", "type", "size",
  "names", "removed", "workloads"}``, times on ``CLOCK_MONOTONIC`` (the same clock in every process
  of the machine): ``received_ns`` when gRPC handed the decoded message to the client, ``apply_ns``
  when the client started applying it to its state store, ``t_ns`` when the store had it,
  ``apply_cpu_ns`` the CPU time that took; ``size`` the response's protobuf size in bytes, ``names``
  the resources it carried (their count instead when more than 16) and ``workloads`` the status and
  version the store now holds for each ``wl/`` name it carried.

Stops when stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import uvloop

from ambit.bench.child import JsonObject, announce, credential_from_json, read_config, stdin_closed
from ambit.model.workload import Workload
from ambit.net.tasks import spawn
from ambit.state.snapshot import Entry, Snapshot
from ambit.state.store import StateStore
from ambit.xds.channel import Address
from ambit.xds.client import ResponseInfo, XdsClient
from ambit.xds.pb.discovery.v1 import discovery_pb2

_MAX_NAMES = 16


def lower_priority(increment: int) -> None:
    """Nice this process by `increment`, and its autogroup too.

    With ``sched_autogroup_enabled`` (most distributions), every session is a scheduling group and
    CPU time is shared between groups first: a niced process alone in its session (each benchmark
    child is) would still get as much CPU as the replica. The group's own nice value fixes that."""
    os.nice(increment)
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w", encoding="ascii") as f:
        f.write(str(min(19, increment)))


def rss_kib() -> int:
    """This process's resident set size (VmRSS), KiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class _TimedStateStore(StateStore):
    """A state store that notes when the latest `apply` started and when it returned."""

    apply_started_ns = 0
    applied_ns = 0
    apply_cpu_ns = 0  # CPU time of this thread during the latest apply

    def apply(self, upserts: Mapping[str, Entry] | None = None, removals: Iterable[str] = ()) -> Snapshot:
        cpu = time.thread_time_ns()
        self.apply_started_ns = time.monotonic_ns()
        try:
            return super().apply(upserts, removals)
        finally:
            self.applied_ns = time.monotonic_ns()
            self.apply_cpu_ns = time.thread_time_ns() - cpu


class _TimedXdsClient(XdsClient):
    """An XdsClient that notes when gRPC handed it the latest response (before decoding and applying)."""

    received_ns = 0

    async def _handle(self, address: Address, call: Any, pb: discovery_pb2.DeltaDiscoveryResponse) -> None:
        self.received_ns = time.monotonic_ns()
        await super()._handle(address, call, pb)


class _Reporter:
    """Turns the client's responses into JSON lines: the initial sync as one line, then one per response."""

    def __init__(self, state: _TimedStateStore) -> None:
        self.state = state
        self.client: _TimedXdsClient | None = None
        self.synced = asyncio.Event()
        self.initial_responses = 0
        self.initial_bytes = 0
        self.initial_resources = 0
        self.synced_ns = 0
        self._pending: list[JsonObject] = []
        self._live = False

    def on_response(self, info: ResponseInfo, client_synced: bool) -> None:
        now = time.monotonic_ns()
        received_ns = self.client.received_ns if self.client is not None else 0
        if not self.synced.is_set():
            self.initial_responses += 1
            self.initial_bytes += info.size
            self.initial_resources += len(info.resources)
            if client_synced:
                self.synced_ns = now
                self.synced.set()
            return
        entries = self.state.current.entries
        workloads: JsonObject = {}
        for name in info.resources[:_MAX_NAMES]:
            entry = entries.get(name)
            if name.startswith("wl/") and entry is not None and isinstance(entry[1], Workload):
                workloads[name] = {"version": entry[0], "status": entry[1].status.name}
        applied = self.state.applied_ns >= received_ns  # this response was applied (it carried something)
        message: JsonObject = {
            "received_ns": received_ns,
            "apply_ns": self.state.apply_started_ns if applied else now,
            "t_ns": self.state.applied_ns if applied else now,
            "apply_cpu_ns": self.state.apply_cpu_ns if applied else 0,
            "hook_ns": now,
            "type": info.type_url.rsplit("/", 1)[-1],
            "size": info.size,
            "names": list(info.resources) if len(info.resources) <= _MAX_NAMES else len(info.resources),
            "removed": list(info.removed),
            "rejected": len(info.rejected),
            "workloads": workloads,
        }
        if self._live:
            announce(message)
        else:
            self._pending.append(message)

    def go_live(self) -> None:
        """Announce what arrived between the sync and the sync announcement, then every response at once."""
        self._live = True
        for message in self._pending:
            announce(message)
        self._pending.clear()


async def main(config: JsonObject) -> None:
    cert, bundle = credential_from_json(config["credential"])
    state = _TimedStateStore()
    reporter = _Reporter(state)
    port = int(config["port"])
    client: _TimedXdsClient | None = None

    def on_response(info: ResponseInfo) -> None:
        reporter.on_response(info, client is not None and client.synced.is_set())

    client = _TimedXdsClient(
        addresses=lambda: [("127.0.0.1", port)],
        cert=cert,
        bundle=bundle,
        store=state,
        node_id=str(config.get("name", "")),
        on_response=on_response,
    )
    reporter.client = client
    client.start()
    try:
        closed = spawn(stdin_closed(), name="stdin")
        synced = spawn(reporter.synced.wait(), name="synced")
        done, _pending = await asyncio.wait({closed, synced}, return_when=asyncio.FIRST_COMPLETED)
        if closed in done:
            synced.cancel()
            return
        announce(
            {
                "synced": True,
                "synced_ns": reporter.synced_ns,
                "resources": len(state.current.entries),
                "responses": reporter.initial_responses,
                "bytes": reporter.initial_bytes,
                "rss_kib": rss_kib(),
            }
        )
        reporter.go_live()
        await closed
    finally:
        await client.close()


def run() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = read_config()
    if config.get("nice"):
        lower_priority(int(config["nice"]))
    uvloop.run(main(config))


if __name__ == "__main__":
    run()
