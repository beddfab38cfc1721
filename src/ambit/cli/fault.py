"""``ambit fault cut NODE`` / ``ambit fault heal NODE`` / ``ambit fault list``: network faults;
``ambit fault reboot NODE``: a node power-cycled.

A cut drops every packet between NODE and the rest of the fabric (the other nodes, the store's
heartbeat listener on the fabric bridge), both ways and silently, as a real partition does; heal
removes it. Both are idempotent. The rules live in the cluster's fabric namespace
(:mod:`ambit.runtime.faults` says what a cut severs and what it does not), so `ambit down` takes them
with it. A reboot SIGKILLs every process of NODE, deletes its pods' network namespaces and boots it
again: its ztunnel and its pods come back racing, each pod's app only once its capture is installed
and the new ztunnel has ACKed it (:mod:`ambit.runtime.controllers.node_reboot`). NODE is ``2`` or
``node2``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ambit.cli import GlobalOptions
from ambit.cli.nodes import NODE

if TYPE_CHECKING:  # imported when a command runs (the root group lists commands without the runtime)
    from ambit.runtime.handle import ClusterHandle


def _handle(ctx: click.Context) -> ClusterHandle:
    from ambit.runtime.handle import ClusterHandle

    options = ctx.find_object(GlobalOptions)
    return ClusterHandle(options.cluster if options is not None else "ambit")


@click.group("fault")
def fault() -> None:
    """Inject faults: cut a node off the fabric, heal it, list the cuts; reboot a node."""


@fault.command("cut")
@click.argument("node", type=NODE)
@click.pass_context
def cut(ctx: click.Context, node: str) -> None:
    """Cut NODE off the fabric (silent drops both ways; its own pods keep talking to each other)."""
    from ambit.runtime.handle import HandleError

    try:
        changed = _handle(ctx).cut(node)
    except HandleError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"node/{node} {'cut off the fabric' if changed else 'already cut'}")


@fault.command("heal")
@click.argument("node", type=NODE)
@click.pass_context
def heal(ctx: click.Context, node: str) -> None:
    """Remove NODE's cut."""
    from ambit.runtime.handle import HandleError

    try:
        changed = _handle(ctx).heal(node)
    except HandleError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"node/{node} {'healed' if changed else 'was not cut'}")


@fault.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """The nodes cut off the fabric now, one a line (nothing when none is)."""
    from ambit.runtime.handle import HandleError
    from ambit.runtime.layout import node_index

    try:
        nodes = _handle(ctx).cuts()
    except HandleError as exc:
        raise click.ClickException(str(exc)) from exc
    for node in sorted(nodes, key=node_index):
        click.echo(node)


@fault.command("reboot")
@click.argument("node", type=NODE)
@click.option("--seed", type=int, default=None, help="Seed of the order NODE's pods come back in.")
@click.pass_context
def reboot(ctx: click.Context, node: str, seed: int | None) -> None:
    """Reboot NODE: SIGKILL all its processes, delete its pods' network namespaces, boot it again.

    Returns once NODE boots (its ztunnel started, its pods on their way back); `ambit status` shows
    them ready again."""
    from ambit.runtime.control import ControlError
    from ambit.runtime.handle import HandleError

    try:
        reply = _handle(ctx).reboot(node, seed=seed)
    except (HandleError, ControlError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"node/{node} rebooted (seed {reply.seed}): {len(reply.killed)} processes killed")
    click.echo(f"pods coming back, in this order: {', '.join(reply.order) or '-'}")
