"""``ambit ca``: create a certificate authority on disk and issue credentials from it.

``ambit ca init`` writes the CA files (see ``ambit.identity.ca``); ``ambit ca issue`` signs a workload
or node identity and writes ``PREFIX-cert.pem`` (leaf, intermediates, root) and ``PREFIX-key.pem``
(mode 0600). Used to bootstrap a cluster's CA and node credentials, and for interop tests.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import click

from ambit.identity.ca import CA_FILES, CaError, CertificateAuthority
from ambit.identity.certs import CertError, issue, write_cert_files
from ambit.model.identity import (
    DEFAULT_TRUST_DOMAIN,
    Identity,
    IdentityError,
    NodeIdentity,
    check_trust_domain,
    parse_spiffe_id,
)

_TTL = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_ttl(text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``24h``, ``7d`` → timedelta; ValueError with the reason otherwise."""
    match = _TTL.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration; use a number with s, m, h or d (e.g. 30m, 24h, 7d)")
    value = int(match.group(1))
    if value == 0:
        raise ValueError("a TTL must be longer than zero")
    return timedelta(**{_UNITS[match.group(2)]: value})


class _TtlParam(click.ParamType[timedelta]):
    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_ttl(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _TrustDomainParam(click.ParamType[str]):
    name = "trust-domain"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_trust_domain(str(value))
        except IdentityError as exc:
            self.fail(str(exc), param, ctx)


@click.group()
def ca() -> None:
    """Create a certificate authority and issue SPIFFE certificates from it."""


@ca.command("init")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="CA directory.",
)
@click.option("--trust-domain", default=DEFAULT_TRUST_DOMAIN, show_default=True, type=_TrustDomainParam())
@click.option("--intermediate", is_flag=True, help="Sign leaves with an intermediate CA under the root.")
@click.option("--force", is_flag=True, help="Replace a CA that already exists in DIR.")
def init(directory: Path, trust_domain: str, intermediate: bool, force: bool) -> None:
    """Create a new root (and optional intermediate) and write it into DIR."""
    existing = [name for name in CA_FILES if (directory / name).exists()]
    if existing and not force:
        raise click.ClickException(
            f"a CA already exists in {directory} ({', '.join(existing)}); pass --force to replace it"
        )
    try:
        authority = CertificateAuthority.create(trust_domain, intermediate=intermediate)
        authority.save(directory)
    except (CaError, OSError) as exc:
        raise click.ClickException(f"cannot create the CA in {directory}: {exc}") from exc
    kind = "root and intermediate" if intermediate else "root"
    click.echo(f"created CA ({kind}) for trust domain {trust_domain} in {directory}")


@ca.command("issue")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="CA directory (from `ambit ca init`).",
)
@click.option(
    "--identity", "spiffe_id", metavar="SPIFFE_ID", help="Workload identity spiffe://TD/ns/NS/sa/SA."
)
@click.option("--node", metavar="NAME", help="Issue the node identity spiffe://TD/node/NAME instead.")
@click.option(
    "--ttl", default="24h", show_default=True, type=_TtlParam(), help="Lifetime: 90s, 30m, 1h, 7d …"
)
@click.option(
    "--out",
    "prefix",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Writes PREFIX-cert.pem and PREFIX-key.pem.",
)
def issue_command(
    directory: Path, spiffe_id: str | None, node: str | None, ttl: timedelta, prefix: Path
) -> None:
    """Issue a certificate for one workload or node identity from the CA in DIR."""
    if (spiffe_id is None) == (node is None):
        raise click.UsageError("give exactly one of --identity or --node")
    try:
        authority = CertificateAuthority.load(directory)
    except CaError as exc:
        raise click.ClickException(f"cannot load the CA: {exc}") from exc
    identity: Identity | NodeIdentity
    try:
        if spiffe_id is not None:
            identity = parse_spiffe_id(spiffe_id)
        else:
            assert node is not None
            identity = NodeIdentity(authority.trust_domain, node)
    except IdentityError as exc:
        option = "--identity" if spiffe_id is not None else "--node"
        raise click.BadParameter(str(exc), param_hint=option) from exc
    if ttl > authority.max_ttl:
        click.echo(f"warning: TTL {ttl} is above the CA maximum; clamped to {authority.max_ttl}", err=True)
    try:
        cert = issue(authority, identity, ttl=ttl)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = write_cert_files(cert, prefix.parent, prefix.name)
    except (CaError, CertError, OSError) as exc:
        raise click.ClickException(f"cannot issue {identity}: {exc}") from exc
    click.echo(f"issued {identity} valid until {cert.not_after:%Y-%m-%dT%H:%M:%SZ}")
    click.echo(f"  certificate chain: {cert_path}")
    click.echo(f"  private key:       {key_path}")
