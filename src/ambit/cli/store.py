"""``ambit store serve`` and the kubectl-like commands on a cluster's store: ``apply``, ``delete``,
``get``, ``label``.

Every command finds the store of ``--cluster`` (``/run/ambit/<cluster>/store.sock``, base
``$AMBIT_RUN_DIR``) unless ``--store-socket`` names one. ``apply -f`` and ``delete -f`` read every
file first and send one transaction, so an invocation is all-or-nothing: one invalid object in any
file and nothing is stored, with an error naming the file, the object and the field.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import uvloop
import yaml

from ambit.cli import GlobalOptions
from ambit.store import paths
from ambit.store.client import StoreClient
from ambit.store.display import plural, resource_name, resource_type, table
from ambit.store.types import Conflict, NotFound, Obj, Op, StoreError, Unavailable, object_key

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_LABEL_KEY = re.compile(
    r"(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_LABEL_RETRIES = 10


class CliError(click.ClickException):
    """A user-facing failure: the message goes to stderr as is (kubectl's style), exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


def _fail(message: str) -> NoReturn:
    raise CliError(message)


# -- finding the store ---------------------------------------------------------------------------


def _store_options(func: _F) -> _F:
    func = click.option(
        "--store-socket",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The store's Unix socket (default: the cluster's, under $AMBIT_RUN_DIR or /run/ambit).",
    )(func)
    func = click.option(
        "--cluster",
        "cluster_override",
        metavar="NAME",
        help="Which local cluster (also accepted before the command).",
    )(func)
    return func


class _Target:
    def __init__(self, cluster: str, socket: Path) -> None:
        self.cluster = cluster
        self.socket = socket

    def unreachable(self) -> str:
        where = f"the store of cluster '{self.cluster}' at {self.socket}"
        return f"cannot reach {where}: is the cluster up? (ambit up)"


def _cluster(override: str | None) -> str:
    if override:
        return override
    options = click.get_current_context().find_object(GlobalOptions)
    return options.cluster if options is not None else "ambit"


def _target(cluster_override: str | None, store_socket: Path | None) -> _Target:
    cluster = _cluster(cluster_override)
    if store_socket is not None:
        return _Target(cluster, store_socket)
    try:
        return _Target(cluster, paths.socket_path(cluster))
    except ValueError as exc:
        _fail(f"error: {exc}")


def _run(target: _Target, work: Callable[[StoreClient], Coroutine[Any, Any, _T]]) -> _T:
    """Run `work` against the store on a fresh loop; an unreachable store is a clear one-line error."""
    if not target.socket.exists():
        _fail(f"error: {target.unreachable()}")

    async def main() -> _T:
        async with StoreClient(target.socket) as client:
            return await work(client)

    try:
        return uvloop.run(main())
    except Unavailable as exc:
        if "cannot reach" in exc.message:
            _fail(f"error: {target.unreachable()}")
        _server_error(exc)
    except StoreError as exc:
        _server_error(exc)


def _server_error(exc: StoreError) -> NoReturn:
    _fail(f"Error from server ({exc.reason}): {exc.message}")


# -- reading manifests ---------------------------------------------------------------------------


def _manifest_files(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _MANIFEST_SUFFIXES]
        return sorted(found)
    if not path.exists():
        _fail(f'error: the path "{spec}" does not exist')
    return [path]


def read_manifests(specs: Iterable[str]) -> list[tuple[str, Obj]]:
    """Every object of every ``-f`` argument, with the file it came from; the first error stops it."""
    from ambit.resources import ManifestError, parse_manifests

    out: list[tuple[str, Obj]] = []
    stdin_used = False
    for spec in specs:
        if spec == "-":
            if stdin_used:
                _fail("error: '-' (stdin) can be given only once")
            stdin_used = True
            sources = [("STDIN", sys.stdin.read())]
        else:
            sources = []
            for path in _manifest_files(spec):
                try:
                    sources.append((str(path), path.read_text(encoding="utf-8")))
                except (OSError, UnicodeDecodeError) as exc:
                    _fail(f"error: cannot read {path}: {exc}")
        for source, text in sources:
            try:
                objects = parse_manifests(text, source=source)
            except ManifestError as exc:
                _fail(f"error: {exc}")
            out.extend((source, obj) for obj in objects)
    return out


def _in_namespace(items: list[tuple[str, Obj]], namespace: str | None) -> list[tuple[str, Obj]]:
    """``-n NS``: objects without a namespace (defaulted) go to NS; another namespace is an error."""
    if not namespace:
        return items
    from ambit.resources import is_namespaced

    out = []
    for source, obj in items:
        meta = obj.get("metadata") or {}
        current = meta.get("namespace")
        if is_namespaced(str(obj.get("kind"))) and current != namespace:
            if current not in (None, "", "default"):
                _fail(
                    f'error: {source}: the namespace from the provided object "{current}" does not match '
                    f"the namespace \"{namespace}\". You must pass '--namespace={current}' to perform this "
                    "operation."
                )
            out.append((source, {**obj, "metadata": {**meta, "namespace": namespace}}))
        else:
            out.append((source, obj))
    return out


def _describe_failure(exc: StoreError, items: list[tuple[str, Obj]]) -> str:
    if exc.index is not None and 0 <= exc.index < len(items):
        source, obj = items[exc.index]
        kind, namespace, name = object_key(obj)
        where = f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
        return f"Error from server ({exc.reason}): error when applying {source} ({where}): {exc.message}"
    return f"Error from server ({exc.reason}): {exc.message}"


# -- the commands ----------------------------------------------------------------------------------


@click.group("store")
def store() -> None:
    """The cluster store server (the API-server role)."""


@store.command("serve")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory (default: the cluster's, <run dir>/<cluster>/store).",
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Unix socket to serve on (default: <run dir>/<cluster>/store.sock).",
)
@click.option("--history", default=10_000, show_default=True, help="Watch events kept for resuming watchers.")
@click.option("--bookmark-interval", default=5.0, show_default=True, help="Seconds between idle BOOKMARKs.")
@click.option("--compact-every", default=1000, show_default=True, help="Fold the log after this many writes.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def serve(
    *,
    directory: Path | None,
    socket_path: Path | None,
    history: int,
    bookmark_interval: float,
    compact_every: int,
    verbose: bool,
) -> None:
    """Serve a cluster's store on a Unix socket until SIGTERM or SIGINT."""
    from ambit.store.persist import PersistError
    from ambit.store.server import StoreServer

    cluster = _cluster(None)
    try:
        directory = directory or paths.data_dir(cluster)
        socket_path = socket_path or paths.socket_path(cluster)
    except ValueError as exc:
        _fail(f"error: {exc}")
    if history < 1 or compact_every < 1 or bookmark_interval <= 0:
        _fail("error: --history, --compact-every and --bookmark-interval must be positive")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    async def main() -> None:
        server = StoreServer(
            directory,
            socket_path,
            history=history,
            bookmark_interval=bookmark_interval,
            compact_every=compact_every,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        try:
            await stop.wait()
        finally:
            logging.getLogger("ambit.store").info("store: shutting down")
            await server.close()

    try:
        uvloop.run(main())
    except (PersistError, StoreError, OSError) as exc:
        _fail(f"error: the store cannot start: {exc}")


@click.command("apply")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="A manifest file, a directory of them (recursively), or - for stdin. Repeatable.",
)
@click.option("-n", "--namespace", help="Namespace for objects that do not name one.")
@_store_options
def apply(
    files: tuple[str, ...], namespace: str | None, cluster_override: str | None, store_socket: Path | None
) -> None:
    """Create or update objects from manifests, all or nothing (like kubectl apply)."""
    from ambit.resources import unknown_kind

    target = _target(cluster_override, store_socket)
    items = _in_namespace(read_manifests(files), namespace)
    if not items:
        _fail("error: no objects passed to apply")
    for source, obj in items:
        if unknown_kind(obj):
            click.echo(
                f'Warning: {source}: kind "{obj.get("kind")}" is not one ambit knows; stored as given',
                err=True,
            )

    async def work(client: StoreClient) -> list[str]:
        try:
            result = await client.transaction([Op("apply", obj) for _, obj in items])
        except Unavailable:
            raise
        except StoreError as exc:
            _fail(_describe_failure(exc, items))
        return [
            f"{resource_name(r.object or obj)} {r.result}"
            for r, (_, obj) in zip(result.results, items, strict=True)
        ]

    for line in _run(target, work):
        click.echo(line)


@click.command("delete")
@click.argument("args", nargs=-1)
@click.option("-f", "--filename", "files", multiple=True, help="Delete the objects of these manifests.")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="With --all or -l: in every namespace.")
@click.option("--all", "delete_all", is_flag=True, help="Delete every object of the kind.")
@click.option("-l", "--selector", help="Delete the objects matching this label selector.")
@click.option("--ignore-not-found", is_flag=True, help="An object that does not exist is not an error.")
@_store_options
def delete(
    *,
    args: tuple[str, ...],
    files: tuple[str, ...],
    namespace: str | None,
    all_namespaces: bool,
    delete_all: bool,
    selector: str | None,
    ignore_not_found: bool,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Delete objects by manifest (-f) or by KIND NAME..., with whatever they own (one transaction).

    \b
      ambit delete -f bookinfo.yaml
      ambit delete pod productpage-v1-abc -n default
      ambit delete svc/web deploy/web
    """
    target = _target(cluster_override, store_socket)
    if files and args:
        _fail("error: give either -f FILE or KIND NAME, not both")
    if files:
        refs: list[tuple[str | None, Obj]] = list(_in_namespace(read_manifests(files), namespace))
        queries: list[tuple[str, str | None]] = []
    elif args:
        refs, queries = _delete_targets(args, namespace, all_namespaces, delete_all or bool(selector))
    else:
        _fail("error: give -f FILE, or KIND with NAME..., --all or -l SELECTOR")

    async def work(client: StoreClient) -> tuple[list[str], list[str]]:
        for kind, ns in queries:
            refs.extend((None, obj) for obj in (await client.list(kind, ns, label_selector=selector)).items)
        return await _delete(client, refs, ignore_not_found)

    done, missing = _run(target, work)
    for line in done:
        click.echo(line)
    if not done and not missing and queries:
        click.echo("No resources found", err=True)
    for line in missing:
        click.echo(line, err=True)
    if missing:
        click.get_current_context().exit(1)


def _delete_targets(
    args: tuple[str, ...], namespace: str | None, all_namespaces: bool, by_query: bool
) -> tuple[list[tuple[str | None, Obj]], list[tuple[str, str | None]]]:
    """``KIND NAME...`` → object references; ``KIND`` with --all / -l → (kind, namespace) queries."""
    from ambit.resources import is_namespaced, resolve_kind

    refs: list[tuple[str | None, Obj]] = []
    queries: list[tuple[str, str | None]] = []
    for kind, name in _kind_names(args, resolve_kind):
        if name is None:
            if not by_query:
                _fail(f'error: resource name may not be empty (give NAME, --all or -l for "{kind}")')
            queries.append(
                (kind, None if all_namespaces or not is_namespaced(kind) else (namespace or "default"))
            )
            continue
        meta: Obj = {"name": name}
        if is_namespaced(kind):
            meta["namespace"] = namespace or "default"
        refs.append((None, {"kind": kind, "metadata": meta}))
    return refs, queries


async def _delete(
    client: StoreClient, refs: list[tuple[str | None, Obj]], ignore_not_found: bool
) -> tuple[list[str], list[str]]:
    """Delete every referenced object that exists in one transaction; report the missing ones."""
    seen: set[tuple[str, str, str]] = set()
    ops: list[tuple[str | None, Op]] = []
    for source, obj in refs:
        meta = obj.get("metadata") or {}
        ref_meta = {"name": meta.get("name")}
        if meta.get("namespace"):
            ref_meta["namespace"] = meta["namespace"]
        key = (str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))
        if key not in seen:
            seen.add(key)
            ops.append(
                (source, Op("delete", {"kind": obj.get("kind"), "metadata": ref_meta}, missing_ok=True))
            )
    if not ops:
        return [], []
    try:
        result = await client.transaction([op for _, op in ops])
    except Unavailable:
        raise
    except StoreError as exc:
        _server_error(exc)
    done: list[str] = []
    missing: list[str] = []
    for (source, op), res in zip(ops, result.results, strict=True):
        kind, name = str(op.object["kind"]), op.object["metadata"]["name"]
        if res.result != "notfound":
            done.append(f'{resource_type(kind, (res.object or {}).get("apiVersion"))} "{name}" deleted')
        elif not ignore_not_found:
            where = f'error when deleting "{source}": ' if source else ""
            missing.append(f'Error from server (NotFound): {where}{plural(kind)} "{name}" not found')
    return done, missing


def _kind_names(args: tuple[str, ...], resolve: Callable[[str], str]) -> list[tuple[str, str | None]]:
    """``KIND NAME...``, ``KIND``, or ``KIND/NAME...`` (any mix of kinds) → (kind, name or None)."""
    if any("/" in arg for arg in args):
        out: list[tuple[str, str | None]] = []
        for arg in args:
            if "/" not in arg:
                _fail(
                    f"error: there is no need to specify a resource type as a separate argument when passing "
                    f"arguments in resource/name form (e.g. 'ambit get resource/<resource_name>' instead of "
                    f"'ambit get resource resource/<resource_name>'): \"{arg}\""
                )
            kind_text, name = arg.split("/", 1)
            if not kind_text or not name:
                _fail(f'error: "{arg}" is not KIND/NAME')
            out.append((resolve(kind_text), name))
        return out
    kinds = [resolve(k) for k in args[0].split(",") if k]
    if not kinds:
        _fail("error: a resource type is required")
    if len(args) == 1:
        return [(kind, None) for kind in kinds]
    if len(kinds) > 1:
        return [(kind, name) for kind in kinds for name in args[1:]]
    return [(kinds[0], name) for name in args[1:]]


@click.command("get")
@click.argument("args", nargs=-1, required=True)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="List across every namespace.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json", "wide", "name"]),
    help="Output format (default: a table).",
)
@click.option("-l", "--selector", help="Label selector, e.g. app=web,tier!=db.")
@click.option("--show-labels", is_flag=True, help="Add a LABELS column.")
@_store_options
def get(
    *,
    args: tuple[str, ...],
    namespace: str | None,
    all_namespaces: bool,
    output: str | None,
    selector: str | None,
    show_labels: bool,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Show objects: KIND[,KIND...] [NAME...] or KIND/NAME... (po, svc, deploy, ns, gtw, ap, ...).

    \b
      ambit get pods -A -o wide
      ambit get svc productpage -o yaml
      ambit get ns --show-labels
    """
    from ambit.resources import is_namespaced, resolve_kind

    target = _target(cluster_override, store_socket)
    wanted = _kind_names(args, resolve_kind)
    ns = namespace or "default"
    named = any(name is not None for _, name in wanted)

    async def work(client: StoreClient) -> tuple[list[Obj], list[str]]:
        found: list[Obj] = []
        errors: list[str] = []
        for kind, name in wanted:
            scoped_ns = ns if is_namespaced(kind) else None
            if name is None:
                list_ns = None if all_namespaces or scoped_ns is None else scoped_ns
                found.extend((await client.list(kind, list_ns, label_selector=selector)).items)
                continue
            try:
                found.append(await client.get(kind, name, scoped_ns))
            except NotFound:
                errors.append(f'Error from server (NotFound): {plural(kind)} "{name}" not found')
        return found, errors

    found, errors = _run(target, work)
    if not found and not errors and not named:
        namespaced = any(is_namespaced(kind) for kind, _ in wanted)
        if namespaced and not all_namespaces:
            click.echo(f"No resources found in {ns} namespace.", err=True)
        else:
            click.echo("No resources found", err=True)
    elif found:
        click.echo(
            _render(
                found,
                output,
                single=named and len(wanted) == 1,
                all_namespaces=all_namespaces,
                show_labels=show_labels,
                kinds=[k for k, _ in wanted],
                is_namespaced=is_namespaced,
            )
        )
    for line in errors:
        click.echo(line, err=True)
    if errors:
        click.get_current_context().exit(1)


def _render(
    found: list[Obj],
    output: str | None,
    *,
    single: bool,
    all_namespaces: bool,
    show_labels: bool,
    kinds: list[str],
    is_namespaced: Callable[[str], bool],
) -> str:
    if output in ("yaml", "json"):
        data: Any = (
            found[0] if single else {"apiVersion": "v1", "kind": "List", "items": found, "metadata": {}}
        )
        if output == "json":
            return json.dumps(data, indent=4, ensure_ascii=False)
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True).rstrip(
            "\n"
        )
    if output == "name":
        return "\n".join(resource_name(obj) for obj in found)
    distinct = list(dict.fromkeys(kinds))
    blocks = []
    for kind in dict.fromkeys(str(obj.get("kind")) for obj in found):
        objects = [obj for obj in found if obj.get("kind") == kind]
        blocks.append(
            table(
                objects,
                kind=kind,
                wide=output == "wide",
                with_namespace=all_namespaces and is_namespaced(kind),
                with_type=len(distinct) > 1,
                show_labels=show_labels,
            )
        )
    return "\n\n".join(blocks)


@click.command("label")
@click.argument("args", nargs=-1, required=True)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.option("--overwrite", is_flag=True, help="Allow replacing a label that already has a value.")
@_store_options
def label(
    *,
    args: tuple[str, ...],
    namespace: str | None,
    overwrite: bool,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Add, change (--overwrite) or remove (key-) labels: KIND NAME key=value... key-...

    \b
      ambit label ns default istio.io/dataplane-mode=ambient
      ambit label pod web-1 tier=front --overwrite
      ambit label svc/web tier-
    """
    from ambit.resources import is_namespaced, resolve_kind

    target = _target(cluster_override, store_socket)
    usage = "error: give KIND NAME (or KIND/NAME) and at least one label update (key=value or key-)"
    if "/" in args[0]:
        kind_text, _, name = args[0].partition("/")
        specs = args[1:]
    elif len(args) >= 2:
        kind_text, name, specs = args[0], args[1], args[2:]
    else:
        _fail(usage)
    if not kind_text or not name or not specs:
        _fail(usage)
    kind = resolve_kind(kind_text)
    add, remove = parse_label_specs(specs)
    obj_ns = (namespace or "default") if is_namespaced(kind) else None

    async def work(client: StoreClient) -> tuple[str, list[str]]:
        for _ in range(_LABEL_RETRIES):
            try:
                obj = await client.get(kind, name, obj_ns)
            except NotFound:
                _fail(f'Error from server (NotFound): {plural(kind)} "{name}" not found')
            labels: dict[str, str] = dict((obj.get("metadata") or {}).get("labels") or {})
            if not overwrite:
                taken = [k for k, v in add.items() if k in labels and labels[k] != v]
                if taken:
                    _fail(
                        "\n".join(
                            f"error: '{k}' already has a value ({labels[k]}), and --overwrite is false"
                            for k in taken
                        )
                    )
            notes = [f'label "{k}" not found.' for k in remove if k not in labels]
            new = {k: v for k, v in {**labels, **add}.items() if k not in remove}
            if new == labels:
                return f"{resource_name(obj)} not labeled", notes
            obj["metadata"] = {**obj["metadata"], "labels": new}
            try:
                await client.update(obj)
            except Conflict:
                continue  # written meanwhile: read again and reapply
            except NotFound:
                _fail(f'Error from server (NotFound): {plural(kind)} "{name}" not found')
            except Unavailable:
                raise
            except StoreError as exc:
                _server_error(exc)
            return f"{resource_name(obj)} {'unlabeled' if remove and not add else 'labeled'}", notes
        _fail(f'error: {plural(kind)} "{name}" kept changing; gave up after {_LABEL_RETRIES} attempts')

    line, notes = _run(target, work)
    for note in notes:
        click.echo(note, err=True)
    click.echo(line)


def parse_label_specs(specs: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """``key=value`` (set) and ``key-`` (remove) → (to set, to remove); a clear error for anything else."""
    add: dict[str, str] = {}
    remove: list[str] = []
    for spec in specs:
        if "=" in spec:
            key, _, value = spec.partition("=")
            if not _LABEL_KEY.fullmatch(key) or len(key.rsplit("/", 1)[-1]) > 63:
                _fail(f"error: invalid label key {key!r}: a qualified name like app or example.com/tier")
            if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
                _fail(f"error: invalid label value {value!r}: up to 63 letters, digits, '-', '_' or '.'")
            add[key] = value
        elif spec.endswith("-") and _LABEL_KEY.fullmatch(spec[:-1]):
            remove.append(spec[:-1])
        else:
            _fail(f"error: invalid label spec {spec!r}: use key=value to set and key- to remove")
    both = sorted(set(add) & set(remove))
    if both:
        _fail(f"error: cannot both modify and remove a label in the same command: {', '.join(both)}")
    return add, remove


COMMANDS = (store, apply, delete, get, label)


def register(group: click.Group) -> None:
    """Add ``store``, ``apply``, ``delete``, ``get`` and ``label`` to the root command."""
    for command in COMMANDS:
        group.add_command(command)
