"""The sample app's pure parts: identity fallbacks, validation, httpbin path parsing, tcp-echo prefixing,
and the CLI's argument checks."""

from __future__ import annotations

import math
import random

import pytest
from click.testing import CliRunner

from ambit.apps.sample import (
    MAX_DELAY_SECONDS,
    SampleConfig,
    choose_status,
    config_from_args,
    format_addr,
    parse_delay,
    parse_status,
    parse_weighted_statuses,
    prefix_lines,
)
from ambit.cli import cli


def test_identity_from_options_then_environment() -> None:
    env = {"POD_NAME": "p-env", "NODE_NAME": "n-env", "POD_NAMESPACE": "ns-env", "SERVICE_VERSION": "v9"}
    given = SampleConfig(http_ports=(80,), pod="p", node="n", namespace="ns", version="v1").resolved(env)
    assert (given.pod, given.node, given.namespace, given.version) == ("p", "n", "ns", "v1")
    from_env = SampleConfig(http_ports=(80,)).resolved(env)
    assert (from_env.pod, from_env.node, from_env.namespace, from_env.version) == (
        "p-env",
        "n-env",
        "ns-env",
        "v9",
    )
    bare = SampleConfig(http_ports=(80,)).resolved({"HOSTNAME": "host-1"})
    assert (bare.pod, bare.node, bare.namespace, bare.version) == ("host-1", "", "default", "unknown")
    assert bare.http_ports == (80,)
    assert SampleConfig(http_ports=(80,), seed=7).resolved(env).seed == 7


def test_validate() -> None:
    SampleConfig(http_ports=(0, 0), tcp_ports=(0,)).validate()  # several "any free port" are fine
    for bad in (
        SampleConfig(),
        SampleConfig(http_ports=(80,), tcp_ports=(80,)),
        SampleConfig(http_ports=(70000,)),
        SampleConfig(http_ports=(80,), grace=-1),
        SampleConfig(http_ports=(80,), grace=math.inf),
        SampleConfig(http_ports=(80,), drain_idle=-0.1),
        SampleConfig(http_ports=(80,), drain_quiet=math.nan),
    ):
        with pytest.raises(ValueError):
            bad.validate()


def test_module_arguments() -> None:
    config = config_from_args(
        [
            "--http-port",
            "9080",
            "--http-port",
            "9081",
            "--tcp-port",
            "9000",
            "--pod",
            "p",
            "--tcp-prefix",
            "hello",
        ]
    )
    assert config.http_ports == (9080, 9081)
    assert config.tcp_ports == (9000,)
    assert config.pod == "p"
    assert config.tcp_prefix == "hello"
    assert config.log_requests
    assert not config_from_args(["--tcp-port", "1", "--quiet"]).log_requests
    # the drain: bounded by --grace, under Kubernetes' default terminationGracePeriodSeconds of 30
    assert (config.grace, config.drain_idle, config.drain_quiet) == (25.0, 1.0, 0.5)
    drain_args = ["--http-port", "1", "--grace", "3", "--drain-idle", "0.2", "--drain-quiet", "0.1"]
    drain = config_from_args(drain_args)
    assert (drain.grace, drain.drain_idle, drain.drain_quiet) == (3.0, 0.2, 0.1)
    assert drain.resolved({}).drain_idle == 0.2  # resolving identity keeps every other field


def test_httpbin_paths() -> None:
    assert parse_status("418") == 418
    assert parse_status("200") == 200
    assert parse_status("100") is None
    assert parse_status("600") is None
    assert parse_status("abc") is None
    assert parse_delay("0.5") == 0.5
    assert parse_delay("-1") == 0.0
    assert parse_delay("3600") == MAX_DELAY_SECONDS
    assert parse_delay("nan") is None
    assert parse_delay("x") is None


def test_weighted_statuses() -> None:
    assert parse_weighted_statuses("418") == [(418, 1.0)]  # a single code, as parse_status reads it
    assert parse_weighted_statuses("200:0.5,503:0.5") == [(200, 0.5), (503, 0.5)]
    assert parse_weighted_statuses("200,503") == [(200, 1.0), (503, 1.0)]
    assert parse_weighted_statuses("200:3,503") == [(200, 3.0), (503, 1.0)]  # no weight: 1
    assert parse_weighted_statuses("200:0,503:2") == [(200, 0.0), (503, 2.0)]  # a zero weight is fine
    assert parse_weighted_statuses("200:1") == [(200, 1.0)]
    assert parse_weighted_statuses("599:1e-3,200:1") == [(599, 0.001), (200, 1.0)]
    assert parse_weighted_statuses("200,200") == [(200, 1.0), (200, 1.0)]
    for bad in (
        "",
        "abc",
        "100",  # not a final status
        "600",
        "200,",
        ",200",
        "200,,503",
        "200,199",
        "200,600:1",
        "200:",
        ":1",
        "200:x",
        "200:-0.5,503:1",  # negative weight
        "200:0,503:0",  # all zero
        "200:0",
        "200:nan,503:1",
        "200:inf,503:1",
        "200:1:1",
        "200:1e308,503:1e308",  # finite weights whose sum is not
    ):
        assert parse_weighted_statuses(bad) is None, bad


def test_choose_status() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert choose_status([(418, 1.0)], rng) == 418
    assert rng.getstate() == state  # a single code draws nothing
    assert {choose_status([(200, 0.0), (503, 1.0)], rng) for _ in range(200)} == {503}
    assert {choose_status([(200, 1.0), (503, 0.0)], rng) for _ in range(200)} == {200}
    drawn = [choose_status([(200, 1.0), (503, 3.0)], rng) for _ in range(4000)]
    assert 0.7 < drawn.count(503) / len(drawn) < 0.8  # 0.75 ± 7 standard deviations
    seeded = [(200, 0.5), (503, 0.5)]
    one, two = random.Random(42), random.Random(42)
    assert [choose_status(seeded, one) for _ in range(50)] == [choose_status(seeded, two) for _ in range(50)]


def test_format_addr() -> None:
    assert format_addr(("10.0.0.1", 80)) == "10.0.0.1:80"
    assert format_addr(("fd00::1", 80, 0, 0)) == "[fd00::1]:80"
    assert format_addr(None) == ""


def test_prefix_lines() -> None:
    assert prefix_lines(b"hello", b"a\nb\nrest") == (b"hello a\nhello b\n", b"rest")
    assert prefix_lines(b"hello", b"rest", final=True) == (b"hello rest", b"")
    assert prefix_lines(b"hello", b"") == (b"", b"")
    long = b"x" * (64 * 1024 + 1)
    assert prefix_lines(b"p", long) == (b"p " + long, b"")


def test_cli_rejects_bad_arguments() -> None:
    runner = CliRunner()
    no_ports = runner.invoke(cli, ["app", "sample", "--pod", "p"])
    assert no_ports.exit_code == 2
    assert "at least one" in no_ports.output
    bad_target = runner.invoke(cli, ["app", "load", "https://a/", "--rate", "10", "--duration", "1"])
    assert bad_target.exit_code == 2
    assert "target" in bad_target.output
    bad_header = runner.invoke(cli, ["app", "load", "http://a/", "--header", "nocolon"])
    assert bad_header.exit_code == 2
    too_fast = runner.invoke(cli, ["app", "load", "http://a/", "--rate", "50000"])
    assert too_fast.exit_code == 2
    helped = runner.invoke(cli, ["app", "--help"])
    assert helped.exit_code == 0
    assert "sample" in helped.output
    assert "load" in helped.output
