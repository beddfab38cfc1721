"""``ambit app``: the built-in sample app, the gRPC echo and the load client (the code lives in
``ambit.apps``).

``ambit app sample`` is what a container with no ``command`` runs: an HTTP echo on every
``--http-port`` and a TCP echo on every ``--tcp-port`` (see ``ambit.apps.sample``).
``ambit app grpc-echo serve`` serves a bytes-in, bytes-out gRPC echo service and ``ambit app grpc-echo
call`` checks one, printing JSON (see ``ambit.apps.grpc_echo``, imported only when those run, so
grpc is not loaded by the other commands).
``ambit app load`` sends open-loop fixed-rate HTTP or TCP load, prints a summary and a per-second
timeline, and with ``--json`` writes every request's record (see ``ambit.apps.load``).
``ambit app probe`` is the chaos engine's probe: several flows at once, new and kept-alive
connections, every request written as a JSON line as it ends (see ``ambit.apps.load.probe``).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ambit.apps.load import MODES, LoadConfig, LoadResult, Mode, Target, run_load
from ambit.apps.load import probe as load_probe
from ambit.apps.load.config import DEFAULT_CONNECTIONS, DEFAULT_TIMEOUT, MAX_DURATION, MAX_RATE, MAX_TIMEOUT
from ambit.apps.load.result import PERCENTILES
from ambit.apps.sample import DEFAULT_GRACE_SECONDS, SampleConfig
from ambit.apps.sample import run as run_sample

_TIMELINE_ROWS = 120


@click.group("app")
def app() -> None:
    """Sample workloads: the built-in sample app, the gRPC echo and the load client."""


@app.command("sample")
@click.option("--http-port", type=click.IntRange(0, 65535), multiple=True, help="HTTP echo port (repeat).")
@click.option("--tcp-port", type=click.IntRange(0, 65535), multiple=True, help="TCP echo port (repeat).")
@click.option("--pod", default="", help="Pod name reported by the app.  [default: $POD_NAME]")
@click.option("--node", default="", help="Node name reported by the app.  [default: $NODE_NAME]")
@click.option("--namespace", default="", help="Namespace reported by the app.  [default: $POD_NAMESPACE]")
@click.option("--version", default="", help="Version (helloworld's /hello).  [default: $SERVICE_VERSION]")
@click.option("--tcp-prefix", default=None, help="Answer each TCP line '<prefix> <line>' (Istio tcp-echo).")
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE_SECONDS,
    show_default=True,
    help="Seconds in-flight work gets after SIGTERM.",
)
@click.option("--quiet", is_flag=True, help="No per-request log lines.")
def sample(
    http_port: tuple[int, ...],
    tcp_port: tuple[int, ...],
    pod: str,
    node: str,
    namespace: str,
    version: str,
    tcp_prefix: str | None,
    bind: str,
    grace: float,
    quiet: bool,
) -> None:
    """Serve the HTTP echo and TCP echo until SIGTERM (then finish in-flight work and exit 0).

    Prints 'ambit-sample ready ... http=<ports> tcp=<ports>' once listening (port 0: any free
    port), then one line per HTTP request and per closed TCP connection.
    """
    config = SampleConfig(
        http_ports=http_port,
        tcp_ports=tcp_port,
        pod=pod,
        node=node,
        namespace=namespace,
        version=version,
        tcp_prefix=tcp_prefix,
        bind=bind,
        log_requests=not quiet,
        grace=grace,
    )
    try:
        config.validate()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    run_sample(config)


@app.group("grpc-echo")
def grpc_echo() -> None:
    """A gRPC echo service (ambit.echo.Echo: Unary, bidi Stream, Fail) and its checking client."""


@grpc_echo.command("serve")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=7070, show_default=True, help="0: any free port."
)
@click.option("--pod", default="", help="Pod name in the answers.  [default: $POD_NAME]")
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option(
    "--grace", type=click.FloatRange(min=0), default=5.0, show_default=True, help="Seconds open calls get."
)
def grpc_echo_serve(port: int, pod: str, bind: str, grace: float) -> None:
    """Serve the gRPC echo (insecure: the mesh provides mTLS) until SIGTERM, then exit 0.

    Prints 'ambit-grpc-echo ready pod=<pod> port=<port>' once listening.
    """
    from ambit.apps.grpc_echo import run_server

    try:
        run_server(port, pod or None, bind=bind, grace=grace)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None


@grpc_echo.command("call")
@click.option("--target", required=True, help="host:port of the echo service.")
@click.option("--unary", type=click.IntRange(min=0), default=3, show_default=True, help="Unary calls.")
@click.option("--stream", type=click.IntRange(min=0), default=3, show_default=True, help="Stream messages.")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds per call.",
)
def grpc_echo_call(target: str, unary: int, stream: int, timeout: float) -> None:
    """Call Unary, a bidi Stream and Fail on TARGET; print one JSON object; exit 1 on misbehaviour.

    The JSON: unary (answers), unary_trailers, stream (answers), fail_code, fail_details (expected
    NOT_FOUND, 'no such thing') and errors (empty when every call behaved).
    """
    from ambit.apps.grpc_echo import run_call, split_target

    try:
        split_target(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--target") from None
    result = run_call(target, unary=unary, stream=stream, timeout=timeout)
    click.echo(result.to_json())
    if not result.ok:
        sys.exit(1)


def _header(value: str) -> tuple[str, str]:
    name, sep, rest = value.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{value!r} is not 'Name: value'", param_hint="--header")
    return name.strip(), rest.strip()


@app.command("load")
@click.argument("target")
@click.option("--rate", type=click.FloatRange(0, MAX_RATE, min_open=True), default=100.0, show_default=True)
@click.option(
    "--duration", type=click.FloatRange(0, MAX_DURATION, min_open=True), default=10.0, show_default=True
)
@click.option("--mode", type=click.Choice(MODES), default="keepalive", show_default=True)
@click.option(
    "--connections",
    type=click.IntRange(min=1),
    default=DEFAULT_CONNECTIONS,
    show_default=True,
    help="Kept-alive connections in the pool.",
)
@click.option("--max-connections", type=click.IntRange(min=1), help="Bound on open kept-alive connections.")
@click.option("--max-inflight", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option("--payload", type=click.IntRange(min=0), help="Bytes per request (HTTP body; TCP line: 64).")
@click.option(
    "--timeout",
    type=click.FloatRange(0, MAX_TIMEOUT, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
)
@click.option("--marker", default="ambit-load", show_default=True, help="Put in X-Request-Id / TCP payload.")
@click.option("--method", default=None, help="HTTP method.  [default: GET, POST with --payload]")
@click.option("--header", "headers", multiple=True, help="Extra HTTP header 'Name: value' (repeat).")
@click.option("--expect-prefix", default=None, help="TCP: expect '<prefix> <line>' back (Istio tcp-echo).")
@click.option("--no-retry-stale", is_flag=True, help="Never retry a request on a fresh connection.")
@click.option(
    "--queue",
    is_flag=True,
    help="With --max-connections: wait for a busy connection (the wait counts) instead of 'overloaded'.",
)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write all records here."
)
@click.option("--strict", is_flag=True, help="Exit 1 if any request failed.")
def load(
    target: str,
    rate: float,
    duration: float,
    mode: str,
    connections: int,
    max_connections: int | None,
    max_inflight: int,
    payload: int | None,
    timeout: float,
    marker: str,
    method: str | None,
    headers: tuple[str, ...],
    expect_prefix: str | None,
    no_retry_stale: bool,
    queue: bool,
    json_out: Path | None,
    strict: bool,
) -> None:
    """Open-loop fixed-rate load on TARGET (http://host:port/path or tcp://host:port).

    Requests are scheduled every 1/RATE seconds for DURATION seconds whatever the server does;
    latency counts from the scheduled time. Modes: new (a connection per request), keepalive (a
    pool of --connections), mixed (alternating).
    """
    config = LoadConfig(
        target=target,
        rate=rate,
        duration=duration,
        mode=_mode(mode),
        connections=connections,
        max_connections=max_connections,
        max_inflight=max_inflight,
        timeout=timeout,
        payload=payload,
        marker=marker,
        method=method,
        headers=tuple(_header(h) for h in headers),
        expect_prefix=expect_prefix,
        retry_stale=not no_retry_stale,
        queue=queue,
    )
    try:
        config.validate()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    import uvloop

    result = uvloop.run(run_load(config))
    if json_out is not None:
        json_out.write_text(result.to_json())
    print_result(result, Console())
    if strict and result.failed:
        sys.exit(1)


def _flow(value: str) -> tuple[str, str]:
    name, sep, url = value.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url:
        raise click.BadParameter(f"{value!r} is not NAME=URL", param_hint="--flow")
    try:
        Target.parse(url)
    except ValueError as exc:
        raise click.BadParameter(f"{name}: {exc}", param_hint="--flow") from None
    return name, url


def _kinds(value: str) -> tuple[load_probe.ProbeKind, ...]:
    kinds: list[load_probe.ProbeKind] = []
    for word in (w.strip() for w in value.split(",")):
        kind = next((k for k in load_probe.PROBE_KINDS if k == word), None)
        if kind is None or kind in kinds:
            raise click.BadParameter(
                f"{value!r}: give one or both of {','.join(load_probe.PROBE_KINDS)}", param_hint="--kinds"
            )
        kinds.append(kind)
    return tuple(kinds)


@app.command("probe")
@click.option(
    "--flow", "flows", multiple=True, required=True, metavar="NAME=URL", help="A flow to probe (repeat)."
)
@click.option("--source", required=True, help="This probe's label (its node's name), on every line.")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The JSON-lines file."
)
@click.option(
    "--rate",
    type=click.FloatRange(0, MAX_RATE, min_open=True),
    default=load_probe.DEFAULT_RATE,
    show_default=True,
    help="Requests per second per flow and kind.",
)
@click.option(
    "--duration",
    type=click.FloatRange(0, MAX_DURATION, min_open=True),
    default=load_probe.DEFAULT_DURATION,
    show_default=True,
    help="Seconds; SIGTERM ends the probe sooner.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, MAX_TIMEOUT, min_open=True),
    default=load_probe.DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds per request.",
)
@click.option(
    "--max-age",
    type=click.FloatRange(min=0),
    default=load_probe.DEFAULT_MAX_AGE,
    show_default=True,
    help="Seconds a kept-alive connection is reused (0: for ever).",
)
@click.option(
    "--kinds", default=",".join(load_probe.PROBE_KINDS), show_default=True, help="Connection kinds to send."
)
@click.option(
    "--connections",
    type=click.IntRange(min=1),
    default=load_probe.DEFAULT_CONNECTIONS,
    show_default=True,
    help="Kept-alive connections per flow.",
)
def probe(
    flows: tuple[str, ...],
    source: str,
    out: Path,
    rate: float,
    duration: float,
    timeout: float,
    max_age: float,
    kinds: str,
    connections: int,
) -> None:
    """The chaos probe: open-loop load on every --flow, with new and kept-alive connections at once.

    Every request is written to --out as one JSON line when it ends (source, destination, kind,
    start, end, outcome, detail, status, served_node, connection; times are time.monotonic()).
    Nothing is retried. Prints 'probe running source=<s> flows=<n>' once every flow is under way and
    'probe done requests=<n> failed=<m>' at the end; SIGTERM ends it early, the file complete.
    """
    parsed = tuple(_flow(f) for f in flows)
    names = [name for name, _ in parsed]
    if dup := sorted({n for n in names if names.count(n) > 1}):
        raise click.BadParameter(f"flow {dup[0]!r} given twice", param_hint="--flow")
    config = load_probe.ProbeConfig(
        flows=parsed,
        source=source,
        kinds=_kinds(kinds),
        rate=rate,
        duration=duration,
        timeout=timeout,
        max_age=max_age or None,
        connections=connections,
    )
    try:
        config.validate()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    import uvloop

    try:
        uvloop.run(load_probe.run_probe(config, out, signals=(signal.SIGTERM, signal.SIGINT)))
    except OSError as exc:  # the output file
        raise click.ClickException(str(exc)) from None


def _mode(value: str) -> Mode:
    for mode in MODES:
        if mode == value:
            return mode
    raise click.BadParameter(value, param_hint="--mode")


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def print_result(result: LoadResult, console: Console) -> None:
    """The summary, latency and per-second tables of a run."""
    summary = result.summary()
    head = Table(title=f"{summary['target']}  mode={summary['mode']}  rate={summary['rate']:g}/s")
    for column in ("requests", "ok", "failed", "retried", "achieved/s", "connections"):
        head.add_column(column, justify="right")
    head.add_row(
        str(summary["total"]),
        str(summary["ok"]),
        str(summary["failed"]),
        str(summary["retried"]),
        f"{summary['achieved_rate']:.1f}",
        " ".join(f"{k}={v}" for k, v in summary["connections"].items()),
    )
    console.print(head)

    outcomes = Table(title="outcomes")
    outcomes.add_column("outcome")
    outcomes.add_column("count", justify="right")
    for outcome, count in summary["outcomes"].items():
        outcomes.add_row(outcome, str(count))
    latency = Table(title="latency of ok requests (ms, from the scheduled time)")
    for p in PERCENTILES:
        latency.add_column(f"p{p:g}", justify="right")
    latency.add_column("max", justify="right")
    latency.add_row(*(_ms(result.percentile(p)) for p in PERCENTILES), _ms(summary["latency"]["max"]))
    console.print(outcomes)
    console.print(latency)

    timeline = result.by_second()
    if len(timeline) > _TIMELINE_ROWS:
        timeline = [s for s in timeline if s.failed]
    table = Table(title="per second (by scheduled time)")
    for column in ("second", "scheduled", "ok", "failed", "max ms", "outcomes"):
        table.add_column(column, justify="right" if column != "outcomes" else "left")
    for s in timeline:
        bad = {k: v for k, v in s.outcomes.items() if k != "ok"}
        table.add_row(
            str(s.second),
            str(s.scheduled),
            str(s.ok),
            f"[red]{s.failed}[/red]" if s.failed else "0",
            _ms(s.max_latency),
            " ".join(f"{k}={v}" for k, v in bad.items()),
        )
    console.print(table)
