"""What starting `ambit` loads: every ambit process (a ztunnel's too) imports the CLI, so what the CLI
imports at start is paid in memory by every proxy. Manifest validation (pydantic) and the control plane
(with the token verifier, PyJWT) load only when used."""

from __future__ import annotations

import json
import subprocess
import sys

NOT_AT_START = (
    "pydantic",
    "pydantic_core",
    "ambit.control.app",
    "jwt",
    "ambit.cli.runtime",  # the runtime's commands (up, down, status, ...) and what they import
    "ambit.runtime.cluster",
)
PROBE = (
    "import json, sys; import ambit.cli, ambit.cli.ztunnel, ambit.ztunnel.app; "
    f"print(json.dumps(sorted(m for m in {NOT_AT_START!r} if m in sys.modules)))"
)


def test_starting_ambit_does_not_load_pydantic() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_the_probe_sees_pydantic_once_manifests_are_parsed() -> None:
    """The control case: the same probe reports pydantic once something parses a manifest."""
    probe = PROBE.replace("ambit.ztunnel.app;", "ambit.ztunnel.app, ambit.resources.manifest;")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "pydantic" in json.loads(out)


def test_the_probe_sees_the_control_plane_and_pyjwt_once_used() -> None:
    """The control case: importing the control plane and checking a token load what start does not."""
    use = (
        "ambit.ztunnel.app, ambit.control.app; "
        "from datetime import UTC, datetime; from ambit.identity.tokens import TokenError, TokenVerifier; "
        "from cryptography.hazmat.primitives.asymmetric import ec; "
        "v = TokenVerifier([ec.generate_private_key(ec.SECP256R1()).public_key()]); "
        "exec('try: v.verify(\\'x\\', now=datetime.now(UTC))\\nexcept TokenError: pass'); "
    )
    probe = PROBE.replace("ambit.ztunnel.app; ", use)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert {"ambit.control.app", "jwt"} <= set(json.loads(out))


def test_every_listed_command_resolves_to_a_command_of_that_name() -> None:
    """The lazy root group: a typo in COMMANDS would otherwise only show when that command is run."""
    import click

    from ambit.cli import COMMANDS, cli

    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name, name
    assert cli.get_command(ctx, "no-such-command") is None


def test_running_a_command_loads_its_module_only_then() -> None:
    """The control case for the lazy group: asking for `status` imports the runtime's commands."""
    use = (
        "ambit.ztunnel.app; import click; cli = ambit.cli.cli; "
        "cli.get_command(click.Context(cli), 'status'); "
    )
    probe = PROBE.replace("ambit.ztunnel.app; ", use)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "ambit.cli.runtime" in json.loads(out)
