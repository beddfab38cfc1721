"""An open-loop, fixed-rate HTTP/TCP load client that records every request.

Open loop, no coordinated omission
----------------------------------
Request ``i`` is *scheduled* at ``i / rate`` seconds after the start, whatever happened to the
requests before it; there are exactly ``floor(rate * duration)`` of them, so a stalled server or a
lagging event loop never reduces the number of requests. Each request's ``latency`` is measured
from its scheduled time, not from when it was actually sent: time spent waiting to be sent counts
(``started - scheduled`` shows how late it went out; should a millisecond timer such as uvloop's
fire early, latency counts from the actual start instead). A request that cannot start because
of a limit is recorded too, as ``overloaded``:

* ``max_inflight`` (default 4096): requests outstanding at once, in every mode (the record's
  ``started`` is None: it never ran);
* keep-alive connections: the pool keeps ``connections`` (N) connections, used one request at a
  time and reused first in, first out. When all are busy, a request opens an extra connection, up
  to ``max_connections`` open at once (default ``max(N, 512)``); extra connections are closed
  after their request rather than pooled. Beyond that bound the request is ``overloaded`` (it
  started, but got no connection) — or, with ``queue``, it waits for the next connection to come
  free (first come, first served), and the wait counts in its latency: a fixed pool of exactly
  ``max_connections`` connections, as fortio's ``-c`` with ``-qps``.

With ``max_age`` (seconds, default none), a kept-alive connection older than that (counted from
when it was connected) is closed instead of being reused, when it comes back from a request or is
next taken from the pool; the request that would have reused it opens a new one (its
``connection`` is ``new``). A client that reconnects every so often sees a changed route or a
replaced peer, as long-lived clients with a connection lifetime do.

Each request runs under ``timeout`` seconds (default 5) from its actual start.

Modes
-----
``new``: a new TCP connection per request (HTTP sends ``Connection: close``). ``keepalive``: the
pool above. ``mixed``: even-numbered requests new, odd-numbered kept-alive.

A kept-alive connection found closed by the peer while idle is discarded before use. If a *reused*
connection fails with ``closed``/``reset`` before a single response byte arrives (the peer closed
it as the request went out), the request is retried once on a new connection, as HTTP clients do
for idle connections; such records have ``retried`` True and `LoadResult.retried` counts them, so
a test can forbid them.

Outcomes
--------
``ok`` (HTTP 2xx; TCP: the exact echo), ``http_<status>`` (any other final status),
``connect_error`` (refused, unreachable, resolution failed), ``timeout`` (detail: the phase),
``reset`` (ECONNRESET/EPIPE), ``closed`` (EOF before any response byte), ``short_read`` (EOF in
the middle of a response or echo), ``protocol_error`` (unparseable HTTP), ``mismatch`` (TCP echo
differs), ``overloaded`` (a limit above), ``error`` (anything else; detail says what).

Served by: with ``served_by_field`` (e.g. ``node``; HTTP only), the body of a 2xx answer is read
(framed as always: Content-Length, chunked or until close; its first 64 KiB kept) and, if it is a
JSON object whose field of that name is a string, that string becomes the record's ``served_by``
(otherwise "": that is no failure). The sample app's answers carry ``node`` and ``pod``.

Targets: ``http://host[:port]/path?query`` (https is not supported) or ``tcp://host:port``. TCP
requests send a line ``<marker> <index> ....\\n`` of ``payload`` bytes (default 64) and expect it
back (with ``expect_prefix``: ``<prefix> <line>``, the Istio tcp-echo answer). HTTP requests send
``X-Request-Id: <marker>-<index>``; with ``payload`` > 0 a body of that many bytes (POST unless
``method`` says otherwise).

Bounds: rate <= 20000/s, duration <= 3600 s, at most 1,000,000 requests per run, timeout <= 60 s.
The run ends by itself at about ``duration + timeout``.

API: ``await run_load(LoadConfig(...)) -> LoadResult``; the CLI is ``ambit app load``.

The chaos probe (``probe``): several flows (name, URL) in one process and one event loop, each sent
both ways (``new`` and ``keepalive``) on its own open-loop schedule with no retries, every request
written as one JSON line as it ends (``await run_probe(ProbeConfig(...), path)``,
`read_probe_lines`; the CLI is ``ambit app probe``; see ``ambit.apps.load.probe``).

Modules: ``config`` (knobs, bounds, target), ``outcomes`` (outcome names, `classify`), ``result``
(records, stats, the JSON), ``open_loop`` (the scheduler), ``pool`` (kept-alive connections),
``http1`` (reading a response), ``clients`` (HTTP and TCP-echo exchanges, `run_load`), ``probe``
(the chaos probe).
"""

from ambit.apps.load.clients import run_load
from ambit.apps.load.config import MODES, LoadConfig, Mode, Target
from ambit.apps.load.http1 import read_response
from ambit.apps.load.open_loop import Attempt, run_open_loop
from ambit.apps.load.outcomes import RequestFailed, classify, http_outcome
from ambit.apps.load.result import LoadResult, RequestRecord, SecondStats, percentile_of

__all__ = [
    "MODES",
    "Attempt",
    "LoadConfig",
    "LoadResult",
    "Mode",
    "RequestFailed",
    "RequestRecord",
    "SecondStats",
    "Target",
    "classify",
    "http_outcome",
    "percentile_of",
    "read_response",
    "run_load",
    "run_open_loop",
]
