"""``ambit drain NODE``: cordon a node, evict its pods and wait until they are gone, as ``kubectl drain``.

The drain itself (choosing, evicting, waiting) is :mod:`ambit.runtime.drain`, shared with the chaos
experiment ``node-drain``; this module reads the flags and prints the core's lines.

What it does and prints follows kubectl (kubernetes/kubectl ``pkg/drain/drain.go``, ``filters.go`` and
``pkg/cmd/drain/drain.go``, read for the facts only):

1. **Cordon** the node (:func:`ambit.cli.cordon.set_unschedulable`): ``node/NODE cordoned`` (or
   ``already cordoned``). A missing node stops here.
2. **Choose the pods** bound to the node (``spec.nodeName``, narrowed by ``--pod-selector``), each
   through kubectl's filters in kubectl's order, the first that holds a pod back deciding:
   DaemonSet-managed pods (controller ``apps/v1`` ``DaemonSet``) are never evicted and refuse the drain
   unless ``--ignore-daemonsets`` (ambit has no DaemonSets yet; the rule is kubectl's all the same);
   mirror pods (annotation ``kubernetes.io/config.mirror``: ambit's control-plane pods, see
   ``runtime/bootstrap.py``) are skipped without a word; pods with an ``emptyDir`` volume refuse the
   drain unless ``--delete-emptydir-data``; pods without a controller ``ownerReference`` refuse it
   unless ``--force``. A finished pod (Succeeded/Failed) passes the DaemonSet, local-storage and
   controller rules. The refusals are ``cannot delete <what> (use --<flag> ...): ns/a, ns/b``; what the
   flags let through is named on stderr as ``Warning: <what>: ns/a, ...``.
3. **Evict** them concurrently (``evicting pod NS/NAME``, once per attempt). A refusal by a
   PodDisruptionBudget (429) prints ``error when evicting pods/"NAME" -n "NS" (will retry after 5s):
   <the store's message, naming the budget>`` and is retried every :data:`EVICTION_RETRY_DELAY`
   seconds; any other error fails that pod. ``--disable-eviction`` deletes the pods instead (no budget
   is consulted), one after the other.
4. **Wait** until each pod is gone (its uid no longer in the store; polled every
   :data:`DELETE_POLL_INTERVAL` s): ``pod/NAME evicted`` (``deleted``); then ``node/NODE drained``.

A failure (a refusal by the filters, an eviction that failed, ``--timeout`` reached) prints kubectl's
lines on stderr and exits 1: after an eviction error ``There are pending pods in node "NODE" when an
error occurred: <error>`` and ``pod/NAME`` for each pod still to go; then always ``error: unable to
drain node "NODE" due to error: <error>, continuing command...``, ``There are pending nodes to be
drained:``, `` NODE`` and the error(s) once more, one per line. The timeout of an eviction that is
still being refused reads ``error when evicting pods/"NAME" -n "NS": global timeout reached: 1s``; the
refusal before it named the budget. ``--dry-run=client`` changes nothing and prints ``(dry run)``
after each line (``evicting pod NS/NAME (dry run)``).

Where ambit differs from kubectl: the wait before a retry ends at the ``--timeout`` deadline (kubectl
sleeps its full 5 s first); the 429's message carries the budget's cause (kubectl prints only the
status message, the cause is in the details); one node by name (no ``--selector``), no
``--dry-run=server``, ``--skip-wait-for-delete-timeout`` or ``--chunk-size``, and no retry on a
terminating namespace's Forbidden (ambit's namespaces do not terminate).
"""

from __future__ import annotations

from pathlib import Path

import click

from ambit.cli.cordon import set_unschedulable
from ambit.cli.go_duration import GoDuration
from ambit.cli.store_session import fail, run_on_store, store_options, store_target
from ambit.runtime.drain import (
    EVICTION_RETRY_DELAY,
    DrainEvents,
    DrainFailed,
    DrainOptions,
    aggregate,
    drain_pods,
    go_duration,
    quoted,
)
from ambit.store.client import StoreClient
from ambit.store.selector import SelectorError, label_selector

__all__ = ["EVICTION_RETRY_DELAY", "aggregate", "drain", "go_duration"]  # the first three: the core's


class _Printed(DrainEvents):
    """The drain's lines on stdout and stderr, as kubectl prints them."""

    def line(self, text: str, *, err: bool = False) -> None:
        click.echo(text, err=err)


# -- the command ------------------------------------------------------------------------------------


@click.command("drain")
@click.argument("node")
@click.option(
    "--force", is_flag=True, help="Evict pods that declare no controller too (they are not replaced)."
)
@click.option(
    "--ignore-daemonsets", is_flag=True, help="Leave DaemonSet-managed pods alone instead of refusing."
)
@click.option(
    "--delete-emptydir-data", is_flag=True, help="Evict pods with emptyDir volumes too (their data is lost)."
)
@click.option(
    "--grace-period",
    type=int,
    default=-1,
    show_default=True,
    help="Seconds each pod gets to terminate (negative: the pod's own terminationGracePeriodSeconds).",
)
@click.option(
    "--timeout",
    type=GoDuration(),
    default="0s",
    show_default=True,
    help="Give up after this long (a Go duration: 30s, 5m, 1h30m); 0 waits forever.",
)
@click.option("--pod-selector", default="", help="Only the pods of the node matching this label selector.")
@click.option(
    "--disable-eviction",
    is_flag=True,
    help="Delete the pods instead of evicting them: PodDisruptionBudgets are not consulted.",
)
@click.option(
    "--dry-run",
    type=click.Choice(["none", "client"]),
    default="none",
    is_flag=False,
    flag_value="client",
    show_default=True,
    help="client: only print what would be cordoned and evicted.",
)
@store_options
def drain(
    *,
    node: str,
    force: bool,
    ignore_daemonsets: bool,
    delete_emptydir_data: bool,
    grace_period: int,
    timeout: int,
    pod_selector: str,
    disable_eviction: bool,
    dry_run: str,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Drain NODE for maintenance: cordon it, then evict its pods (as PodDisruptionBudgets allow, retried
    every 5 s) and wait until they are gone. `ambit uncordon NODE` puts it back into service.

    \b
      ambit drain node2
      ambit drain node2 --force --timeout 2m
      ambit drain node2 --pod-selector app=web --dry-run=client
    """
    target = store_target(cluster_override, store_socket)
    try:
        selector = label_selector(pod_selector) if pod_selector.strip() else None
    except SelectorError:
        fail("error: --pod-selector=<pod_selector> must be a valid label selector")
    options = DrainOptions(
        force=force,
        ignore_daemonsets=ignore_daemonsets,
        delete_emptydir_data=delete_emptydir_data,
        pod_selector=selector,
        grace_period=grace_period if grace_period >= 0 else None,
        timeout_ns=timeout,
        disable_eviction=disable_eviction,
        dry_run=dry_run == "client",
    )
    suffix = " (dry run)" if options.dry_run else ""

    async def work(client: StoreClient) -> bool:
        cordoned = await set_unschedulable(client, node, True, dry_run=options.dry_run)
        click.echo(f"node/{node} {cordoned}{suffix}")
        try:
            await drain_pods(client, node, options, _Printed())
        except DrainFailed as failure:
            why = f"due to error: {failure.text}, continuing command..."
            click.echo(f"error: unable to drain node {quoted(node)} {why}", err=True)
            click.echo("There are pending nodes to be drained:", err=True)
            click.echo(f" {node}", err=True)
            for line in failure.lines:
                click.echo(line, err=True)
            return False
        click.echo(f"node/{node} drained{suffix}")
        return True

    if not run_on_store(target, work):
        click.get_current_context().exit(1)
