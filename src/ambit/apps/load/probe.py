"""The chaos probe: several flows in one process and one event loop, every request written as a JSON line.

A flow is a name and a URL (``echo-node1`` -> ``http://echo-node1.default:8080/``). For every flow and
every kind of connection (``new``: a connection per request; ``keepalive``: a pool of ``connections``
kept-alive connections, each retired after ``max_age`` seconds), the probe runs one open-loop schedule
of `run_load`'s (``rate`` requests per second whatever happens, see ``ambit.apps.load``), all at once.
Nothing is retried: a request on a kept-alive connection that the peer closed under it is a failure,
and recorded as one. With ``served_by_field`` (default ``node``), a 2xx answer's JSON body names the
node that served it (the sample app's answers carry ``node``).

Every request is written to the output as one line when it ends (a request that never started,
``overloaded``, when it was due)::

    {"source": "node1", "destination": "echo-node2", "kind": "keepalive", "start": 5123.250001,
     "end": 5123.252310, "outcome": "ok", "detail": "", "status": 200, "served_node": "node2",
     "connection": "reused"}

``start``/``end`` are absolute ``time.monotonic()`` seconds (Linux's CLOCK_MONOTONIC, one clock for
every process of the machine, so the chaos engine can place them beside its own events): ``start`` is
when the request actually began (its scheduled time if it never did). ``status`` is null without an
HTTP answer, ``served_node`` "" when the answer did not say, ``connection`` "new"/"reused" ("" if the
request got none). Lines are written in batches, flushed at least every `FLUSH_INTERVAL` seconds: a
probe killed outright loses at most the last fraction of a second, and its file may end in a truncated
line, which `read_probe_lines` ignores.

The probe prints ``probe running source=<source> flows=<n>`` (flushed) once the first request of every
flow and kind is under way, and ``probe done requests=<n> failed=<m>`` at the end. Its stop event (the
CLI: SIGTERM or SIGINT) ends it early but cleanly: requests still in flight are dropped unwritten (they
neither succeeded nor failed), the lines already due are written and the file is closed.

API: ``await run_probe(ProbeConfig(...), path) -> ProbeSummary``; `read_probe_lines` reads the file
back as dicts. The CLI is ``ambit app probe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ambit.apps.load.clients import HttpClient, LoadClient, TcpClient
from ambit.apps.load.config import MAX_TIMEOUT, LoadConfig
from ambit.apps.load.open_loop import _OpenLoop
from ambit.apps.load.outcomes import OK
from ambit.apps.load.result import RequestRecord
from ambit.net.tasks import spawn

ProbeKind = Literal["new", "keepalive"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("new", "keepalive")

DEFAULT_RATE = 10.0
DEFAULT_DURATION = 3600.0
DEFAULT_TIMEOUT = 3.0
DEFAULT_MAX_AGE = 20.0
DEFAULT_CONNECTIONS = 2
FLUSH_INTERVAL = 0.5  # seconds between writes of the lines due
_FLUSH_LINES = 4096  # ... or as soon as this many are due

LINE_FIELDS = (
    "source",
    "destination",
    "kind",
    "start",
    "end",
    "outcome",
    "detail",
    "status",
    "served_node",
    "connection",
)


def _label_ok(text: str) -> bool:
    return bool(text) and text.isprintable() and not any(c.isspace() for c in text)


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """The probe's flows and load; see the module docstring.

    ``rate`` is per flow and per kind; ``max_age`` (None: never) retires kept-alive connections;
    ``connections`` is the pool of each keepalive flow; ``source`` labels every line (the node name)."""

    flows: tuple[tuple[str, str], ...]
    source: str
    kinds: tuple[ProbeKind, ...] = PROBE_KINDS
    rate: float = DEFAULT_RATE
    duration: float = DEFAULT_DURATION
    timeout: float = DEFAULT_TIMEOUT
    max_age: float | None = DEFAULT_MAX_AGE
    connections: int = DEFAULT_CONNECTIONS
    served_by_field: str | None = "node"

    def load_config(self, name: str, url: str, kind: ProbeKind) -> LoadConfig:
        """The `run_load` configuration of one flow and kind (no retries; TCP flows serve no body)."""
        http = urlsplit(url).scheme == "http"
        return LoadConfig(
            target=url,
            rate=self.rate,
            duration=self.duration,
            mode=kind,
            connections=self.connections,
            timeout=self.timeout,
            marker=f"probe-{self.source}-{name}-{kind}",
            retry_stale=False,
            max_age=self.max_age if kind == "keepalive" else None,
            served_by_field=self.served_by_field if http else None,
        )

    def validate(self) -> None:
        """ValueError naming the first bad knob or flow."""
        if not self.flows:
            raise ValueError("need at least one flow")
        if not _label_ok(self.source):
            raise ValueError(f"bad source {self.source!r}: one word, printable")
        kinds = set(self.kinds)
        if not kinds or len(kinds) != len(self.kinds) or not kinds <= set(PROBE_KINDS):
            raise ValueError(f"kinds must be one or both of {', '.join(PROBE_KINDS)}")
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout must be in (0, {MAX_TIMEOUT:.0f}] seconds")
        seen: set[str] = set()
        for name, url in self.flows:
            if not _label_ok(name) or "=" in name:
                raise ValueError(f"bad flow name {name!r}: one word, printable, no '='")
            if name in seen:
                raise ValueError(f"flow {name!r} given twice")
            seen.add(name)
            for kind in self.kinds:
                try:
                    self.load_config(name, url, kind).validate()
                except ValueError as exc:
                    raise ValueError(f"flow {name}: {exc}") from None


@dataclass(frozen=True, slots=True)
class ProbeSummary:
    """What a probe wrote: ``requests`` lines, ``failed`` of them not ``ok``; ``stopped``: ended early."""

    requests: int
    failed: int
    stopped: bool


def read_probe_lines(text: str) -> list[dict[str, Any]]:
    """The probe's lines as dicts, in file order; blank lines skipped.

    A last line without its newline that is not valid JSON (the probe was killed as it wrote) is
    dropped; any other line that is not a JSON object raises ValueError naming its line number."""
    lines = text.split("\n")
    tail = lines.pop()  # "" when the text ends with a newline
    found: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            found.append(_parse_line(line, number))
    if tail.strip():
        with contextlib.suppress(ValueError):  # truncated as it was written
            found.append(_parse_line(tail, len(lines) + 1))
    return found


def _parse_line(line: str, number: int) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"probe line {number}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"probe line {number}: not a JSON object")
    return data


class ProbeWriter:
    """The output file: lines buffered and written in batches (`flush`), at least every FLUSH_INTERVAL
    while `run` runs."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by `close`
        self.pending: list[str] = []
        self.requests = 0
        self.failed = 0

    def add(self, line: str, ok: bool) -> None:
        self.pending.append(line)
        self.requests += 1
        if not ok:
            self.failed += 1
        if len(self.pending) >= _FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.file.write("".join(self.pending))
            self.pending.clear()
            self.file.flush()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.file.close()


def _json_str(text: str) -> str:
    return json.dumps(text)


def probe_line(prefix: str, t0: float, record: RequestRecord) -> str:
    """One record as a line; `prefix` is the line's constant start (``{"source":...,"kind":...,``)
    and `t0` the run's ``time.monotonic()`` start (record times are relative to it)."""
    start = t0 + (record.scheduled if record.started is None else record.started)
    status = "null" if record.status is None else str(record.status)
    return (
        f'{prefix}"start":{start:.6f},"end":{t0 + record.ended:.6f},"outcome":{_json_str(record.outcome)},'
        f'"detail":{_json_str(record.detail)},"status":{status},'
        f'"served_node":{_json_str(record.served_by)},"connection":{_json_str(record.connection)}}}\n'
    )


def line_prefix(source: str, destination: str, kind: str) -> str:
    return f'{{"source":{_json_str(source)},"destination":{_json_str(destination)},"kind":{_json_str(kind)},'


class _FlowLoop(_OpenLoop):
    """The open-loop schedule of one flow and kind, writing each record as its request ends."""

    def __init__(self, probe: _Probe, config: LoadConfig, client: LoadClient, prefix: str) -> None:
        super().__init__(config, client.execute)
        self.probe = probe
        self.client = client
        self.prefix = prefix
        self.written = bytearray(config.total_requests)

    def launch(self, index: int, scheduled: float) -> None:
        super().launch(index, scheduled)
        if index == 0:
            self.probe.first_scheduled()
        self.write(index)  # recorded at once if it could not start (overloaded)

    async def one(self, index: int, scheduled: float) -> None:
        await super().one(index, scheduled)
        self.write(index)

    def write(self, index: int) -> None:
        record = self.records[index]
        if record is None or self.written[index]:
            return
        self.written[index] = 1
        served = self.client.served.pop(index, "")
        if served:
            record.served_by = served
        self.probe.writer.add(probe_line(self.prefix, self.t0, record), record.outcome == OK)
        self.records[index] = None  # written: the memory is not kept for the whole run

    def write_rest(self) -> None:
        """At the normal end: the records of requests that never ended (see `_OpenLoop.complete`)."""
        if 0 not in self.written:
            return
        for index, record in enumerate(self.complete()):
            if not self.written[index]:
                self.records[index] = record
                self.write(index)


class _Probe:
    def __init__(self, config: ProbeConfig, writer: ProbeWriter, say: Callable[[str], None]) -> None:
        self.config = config
        self.writer = writer
        self.say = say
        self.waiting = len(config.flows) * len(config.kinds)

    def first_scheduled(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.say(f"probe running source={self.config.source} flows={len(self.config.flows)}")

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for name, url in self.config.flows:
                for kind in self.config.kinds:
                    group.create_task(self.flow(name, kind, self.config.load_config(name, url, kind)))

    async def flow(self, name: str, kind: ProbeKind, config: LoadConfig) -> None:
        target = config.validate()
        client: LoadClient
        client = HttpClient(config, target) if target.scheme == "http" else TcpClient(config, target)
        await client.prepare()
        run = _FlowLoop(self, config, client, line_prefix(self.config.source, name, kind))
        try:
            await run.schedule()
        finally:
            await run.cancel()
            client.close()
        run.write_rest()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run_probe(
    config: ProbeConfig,
    out: Path,
    *,
    stop: asyncio.Event | None = None,
    signals: Iterable[signal.Signals] = (),
    say: Callable[[str], None] = _say,
) -> ProbeSummary:
    """Run the probe, writing its lines to `out` (replaced), until its schedules end or `stop` is set
    (also set by any of `signals` while the probe runs); see the module docstring."""
    config.validate()
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    writer = ProbeWriter(out)
    try:
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        flows = spawn(_Probe(config, writer, say).run(), name="probe-flows")
        stopper = spawn(stop.wait(), name="probe-stop")
        flusher = spawn(writer.run(), name="probe-flush")
        tasks = (flows, stopper, flusher)
        try:
            await asyncio.wait((flows, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped = not flows.done()
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        if not flows.cancelled() and (error := flows.exception()) is not None:
            raise error
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        writer.close()
    say(f"probe done requests={writer.requests} failed={writer.failed}")
    return ProbeSummary(writer.requests, writer.failed, stopped)
