"""The store server: one per cluster, HTTP with JSON bodies on a Unix socket (aiohttp).

Endpoints (``_`` stands for "no namespace given" in a path)::

    GET    /healthz                                   {"status": "ok", "revision": "R", "objects": N}
    GET    /objects?kind=K[&kind=K2][&namespace=N][&labelSelector=S]
                                                      {"items": [...], "resourceVersion": "R"}
    GET    /objects/{kind}/{namespace}/{name}         the object | 404
    POST   /objects                                   create → 201 | 409 AlreadyExists | 422
    PUT    /objects/{kind}/{namespace}/{name}         compare-and-swap update → 200 | 404 | 409 | 422
    DELETE /objects/{kind}/{namespace}/{name}[?resourceVersion=R][&uid=U][&gracePeriodSeconds=G]
                                                      the deleted object; cascades to owned objects;
                                                      a bound Pod is marked for graceful deletion
    POST   /objects/Pod/{namespace}/{name}/eviction  [{"deleteOptions": {"gracePeriodSeconds": G}}]
                         → 201 Status: the pod deleted as a PodDisruptionBudget allows (ambit.store.eviction)
                           | 429 TooManyRequests naming the budget | 404 | 500 (more than one budget)
    POST   /transaction  {"operations": [{"op": "apply|create|update|delete", "object": {...}}, ...]}
                         → {"resourceVersion": "R", "results": [{"op", "result", "object"}, ...]}
                         or the first failure's status with {"message", "reason", "index"}; nothing stored
    GET    /watch?resourceVersion=R[&kind=K...][&timeoutSeconds=T]
                         → newline-delimited JSON events {"type": "ADDED|MODIFIED|DELETED|BOOKMARK", "object"}
                           for every change after R, in order; 410 when R is outside the history, or an
                           {"type": "ERROR", "code": 410} event when the watcher falls too far behind.

Errors are ``{"kind": "Status", "status", "reason", "message"[, "index"]}``.

Writes are serialized: a transaction is prepared against the current state, appended to the
write-ahead log and fsync'ed in a worker thread, then committed in memory and pushed to every
watcher's queue in the same loop step, so nothing is visible or acknowledged before it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from ambit.net.tasks import spawn
from ambit.store.core import (
    DEFAULT_HISTORY,
    SYSTEM_NAMESPACES,
    ObjectStore,
    Prepared,
    Schema,
    now_rfc3339,
    parse_ops,
)
from ambit.store.eviction import eviction_ops
from ambit.store.persist import Persistence, PersistError
from ambit.store.selector import SelectorError, parse_selector
from ambit.store.types import (
    BOOKMARK,
    ERROR,
    BadRequest,
    Forbidden,
    Gone,
    NotFound,
    Obj,
    Op,
    StoreError,
    TransactionResult,
    Unavailable,
    WatchEvent,
)

_log = logging.getLogger(__name__)

DEFAULT_BOOKMARK_INTERVAL: Final = 5.0
DEFAULT_COMPACT_EVERY: Final = 1000
DEFAULT_WATCH_QUEUE: Final = 10_000
MAX_BODY: Final = 64 * 1024 * 1024
NODE_LEASE_NAMESPACE: Final = "kube-node-lease"  # Kubernetes' namespace of node heartbeat Leases
NO_NAMESPACE: Final = "_"


def default_schema() -> Schema:
    """Validation and scopes from ``ambit.resources``."""
    from ambit import resources

    return Schema(validate=resources.validate, is_namespaced=resources.is_namespaced)


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _line(data: Any) -> bytes:
    return _dumps(data).encode() + b"\n"


@dataclass(eq=False, slots=True)
class _Watcher:
    """One open watch: a bounded queue of events the stream has not written yet."""

    kinds: frozenset[str] | None
    limit: int
    pending: deque[WatchEvent] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflow: bool = False

    def push(self, events: Sequence[WatchEvent]) -> None:
        if self.overflow:
            return
        for event in events:
            if self.kinds is None or event.object.get("kind") in self.kinds:
                self.pending.append(event)
        if len(self.pending) > self.limit:
            self.overflow = True  # too far behind: cut with 410, never hold writers or grow without bound
            self.pending.clear()
        if self.pending or self.overflow:
            self.wake.set()


class StoreServer:
    """The cluster store: objects on disk, served on `socket_path`."""

    def __init__(
        self,
        directory: Path,
        socket_path: Path,
        *,
        schema: Schema | None = None,
        history: int = DEFAULT_HISTORY,
        bookmark_interval: float = DEFAULT_BOOKMARK_INTERVAL,
        watch_queue_limit: int = DEFAULT_WATCH_QUEUE,
        compact_every: int = DEFAULT_COMPACT_EVERY,
        fsync: bool = True,
        ensure_namespaces: Sequence[str] = SYSTEM_NAMESPACES,
    ) -> None:
        self.directory = Path(directory)
        self.socket_path = Path(socket_path)
        self.store = ObjectStore(schema or default_schema(), history=history)
        self.bookmark_interval = bookmark_interval
        self.watch_queue_limit = watch_queue_limit
        self.compact_every = compact_every
        self.ensure_namespaces = tuple(ensure_namespaces)
        self._persist = Persistence(self.directory, fsync=fsync)
        self._lock = asyncio.Lock()
        self._watchers: set[_Watcher] = set()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._node_runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self._compaction: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the data directory, then listen; the socket exists only once the store is ready."""
        loaded = await asyncio.to_thread(self._persist.open)
        try:
            self.store.load(loaded.revision, loaded.objects, loaded.events)
            if loaded.repaired:
                _log.warning("store: cut off a torn last write-ahead log line (an unacknowledged write)")
            missing = [ns for ns in self.ensure_namespaces if self.store.get(("Namespace", "", ns)) is None]
            if missing:
                ops = [
                    Op("create", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                    for ns in missing
                ]
                await self.write(ops)
            await self._prepare_socket()
            app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors])
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/objects", self._list)
            app.router.add_post("/objects", self._create)
            app.router.add_get("/objects/{kind}/{namespace}/{name}", self._get)
            app.router.add_put("/objects/{kind}/{namespace}/{name}", self._update)
            app.router.add_delete("/objects/{kind}/{namespace}/{name}", self._delete)
            app.router.add_post("/objects/Pod/{namespace}/{name}/eviction", self._evict)
            app.router.add_post("/transaction", self._transaction)
            app.router.add_get("/watch", self._watch)
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
            await runner.setup()
            self._runner = runner
            site = web.UnixSite(runner, str(self.socket_path))
            await site.start()
            os.chmod(self.socket_path, 0o600)
        except BaseException:
            await self.close()
            raise
        _log.info(
            "store serving on %s: revision %d, %d objects, data in %s",
            self.socket_path,
            self.store.revision,
            len(self.store),
            self.directory,
        )

    async def _prepare_socket(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.socket_path.exists() and not self.socket_path.is_symlink():
            return
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.socket_path)), 2.0)
        except (OSError, TimeoutError):
            self.socket_path.unlink()  # stale: nobody listens
            return
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        raise Unavailable(f"another store server is already listening on {self.socket_path}")

    async def close(self) -> None:
        """End every watch, stop listening, fold the log into a snapshot and release the directory."""
        self._closing.set()
        for watcher in list(self._watchers):
            watcher.wake.set()
        if self._streams:
            await asyncio.wait(list(self._streams), timeout=2.0)
        if self._node_runner is not None:
            node_runner, self._node_runner = self._node_runner, None
            await node_runner.cleanup()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        if self._compaction is not None:
            await asyncio.wait([self._compaction])
        async with self._lock:
            if self._persist.records and self._persist.damaged is None:
                try:
                    await self._compact()
                except OSError as exc:
                    _log.error("store: compaction at shutdown failed (the log keeps everything): %s", exc)
            await asyncio.to_thread(self._persist.close)

    @property
    def revision(self) -> int:
        return self.store.revision

    async def listen_for_nodes(
        self, sock: socket.socket, ssl_context: ssl.SSLContext, identify: Callable[[Any], str | None]
    ) -> None:
        """Serve node heartbeats on ``sock`` (a listening TCP socket, e.g. on the fabric) over TLS with a
        client certificate: ``PUT /objects/Lease/kube-node-lease/{node}`` renews that node's Lease, and
        only the node that ``identify(peercert)`` names may write it (403 otherwise); nothing else is
        served there (404)."""
        app = web.Application(client_max_size=64 * 1024, middlewares=[self._errors])
        app.router.add_put("/objects/Lease/" + NODE_LEASE_NAMESPACE + "/{name}", self._node_lease(identify))
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
        self._node_runner = runner

    def _node_lease(
        self, identify: Callable[[Any], str | None]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def renew(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            peer = request.transport.get_extra_info("peercert") if request.transport else None
            node = identify(peer)
            if node is None or node != name:
                raise Forbidden(f"{node or 'an unidentified client'} may not write the Lease of node {name}")
            body = await self._body(request)
            if not isinstance(body, dict) or body.get("kind") != "Lease":
                raise BadRequest("the body must be a Lease")
            meta = body.get("metadata") or {}
            if meta.get("name") != name or meta.get("namespace") != NODE_LEASE_NAMESPACE:
                raise BadRequest(f"the Lease must be {NODE_LEASE_NAMESPACE}/{name}")
            result = await self.write([Op("apply", body)])
            return web.json_response(result.results[0].object, dumps=_dumps)

        return renew

    # -- writes ----------------------------------------------------------------------------------

    async def write(self, ops: Sequence[Op]) -> TransactionResult:
        """Run a transaction to completion even if the caller goes away (a half-done commit is never left)."""
        task = spawn(self._write_captured(list(ops)), name="store-write")
        outcome = await asyncio.shield(task)
        if isinstance(outcome, StoreError):
            raise outcome
        return outcome

    async def _write_captured(self, ops: list[Op] | Callable[[], list[Op]]) -> TransactionResult | StoreError:
        try:
            return await self._write_locked(ops)
        except StoreError as exc:  # an answer, not a task failure
            return exc

    async def evict(self, namespace: str, name: str, grace_period: int | None) -> Obj:
        """The Eviction subresource (:mod:`ambit.store.eviction`): decided and written under the write
        lock, so concurrent evictions see each other's spent budget. Returns the Status body."""
        decided: list[Obj] = []

        def build() -> list[Op]:
            ops, decision = eviction_ops(
                self.store.objects, namespace, name, grace_period=grace_period, now=now_rfc3339()
            )
            decided.append(decision.status_body())
            return ops

        task = spawn(self._write_captured(build), name="store-evict")
        outcome = await asyncio.shield(task)
        if isinstance(outcome, StoreError):
            raise outcome
        return decided[-1]

    async def _write_locked(self, ops: list[Op] | Callable[[], list[Op]]) -> TransactionResult:
        async with self._lock:
            if self._persist.damaged is not None:
                raise Unavailable(f"the store refuses writes: {self._persist.damaged}")
            if self._closing.is_set():
                raise Unavailable("the store is shutting down")
            prepared = self.store.prepare(ops() if callable(ops) else ops)
            if prepared.events:
                await self._commit(prepared)
            return TransactionResult(str(self.store.revision), prepared.results)

    async def _commit(self, prepared: Prepared) -> None:
        try:
            await asyncio.to_thread(self._persist.append, prepared.events)
        except (OSError, PersistError) as exc:
            _log.error("store: write-ahead log append failed: %s", exc)
            raise StoreError(f"the store could not persist the write: {exc}") from exc
        events = self.store.commit(prepared)
        for watcher in self._watchers:
            watcher.push(events)
        if self._persist.records >= self.compact_every and self._compaction is None:
            # in the background: this write is answered now, the next ones wait for the lock
            self._compaction = spawn(self._compact_soon(), name="store-compaction")

    async def _compact_soon(self) -> None:
        try:
            async with self._lock:
                if self._persist.records >= self.compact_every and self._persist.damaged is None:
                    await self._compact()
        except OSError as exc:  # the log still holds everything; try again after more writes
            _log.error("store: compaction failed: %s", exc)
        finally:
            self._compaction = None

    async def _compact(self) -> None:
        objects = list(self.store.objects.values())  # stored objects are never mutated: safe off-loop
        await asyncio.to_thread(self._persist.compact, self.store.revision, objects)

    # -- HTTP ------------------------------------------------------------------------------------

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except StoreError as exc:
            return web.json_response(exc.to_json(), status=exc.status, dumps=_dumps)
        except web.HTTPException:
            raise
        except Exception as exc:
            _log.exception("store: %s %s failed", request.method, request.path)
            body = StoreError(f"internal error: {exc}").to_json()
            return web.json_response(body, status=500, dumps=_dumps)

    @staticmethod
    async def _body(request: web.Request) -> Any:
        try:
            return await request.json(loads=json.loads)
        except ValueError as exc:
            raise BadRequest(f"the request body is not JSON: {exc}") from exc

    @staticmethod
    def _namespace(request: web.Request) -> str | None:
        namespace = request.match_info["namespace"]
        return None if namespace in (NO_NAMESPACE, "") else namespace

    def _path_key(self, request: web.Request) -> tuple[str, str, str]:
        kind = request.match_info["kind"]
        return self.store.key(kind, self._namespace(request), request.match_info["name"])

    async def _healthz(self, request: web.Request) -> web.Response:
        body = {"status": "ok", "revision": str(self.store.revision), "objects": len(self.store)}
        return web.json_response(body, dumps=_dumps)

    async def _list(self, request: web.Request) -> web.Response:
        kinds = request.query.getall("kind", [])
        namespace = request.query.get("namespace") or None
        try:
            matches = parse_selector(request.query.get("labelSelector"))
        except SelectorError as exc:
            raise BadRequest(str(exc)) from exc
        items = self.store.list_objects(kinds or None, namespace)
        items = [obj for obj in items if matches((obj.get("metadata") or {}).get("labels") or {})]
        body = {"items": items, "resourceVersion": str(self.store.revision)}
        return web.json_response(body, dumps=_dumps)

    async def _get(self, request: web.Request) -> web.Response:
        key = self._path_key(request)
        obj = self.store.get(key)
        if obj is None:
            raise NotFound(f"{key[0]} {key[2]!r} not found" + (f" in namespace {key[1]!r}" if key[1] else ""))
        return web.json_response(obj, dumps=_dumps)

    async def _create(self, request: web.Request) -> web.Response:
        result = await self.write([Op("create", await self._body(request))])
        return web.json_response(result.results[0].object, status=201, dumps=_dumps)

    async def _update(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise BadRequest("the request body must be an object")
        key = self._path_key(request)
        meta: Obj = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
        body_key = self.store.key(str(body.get("kind")), meta.get("namespace") or None, str(meta.get("name")))
        if body_key != key:
            raise BadRequest(f"the object {body_key} does not match the path {key}")
        result = await self.write([Op("update", body)])
        return web.json_response(result.results[0].object, dumps=_dumps)

    async def _delete(self, request: web.Request) -> web.Response:
        kind, namespace, name = self._path_key(request)
        meta: Obj = {"name": name}
        if namespace:
            meta["namespace"] = namespace
        if request.query.get("resourceVersion"):
            meta["resourceVersion"] = request.query["resourceVersion"]
        if request.query.get("uid"):
            meta["uid"] = request.query["uid"]
        grace: int | None = None
        if request.query.get("gracePeriodSeconds") is not None:
            text = request.query["gracePeriodSeconds"]
            if not text.isdigit():
                raise BadRequest(f"gracePeriodSeconds must be an integer >= 0, got {text!r}")
            grace = int(text)
        result = await self.write([Op("delete", {"kind": kind, "metadata": meta}, grace_period=grace)])
        return web.json_response(result.results[0].object, dumps=_dumps)

    async def _evict(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        grace: int | None = None
        if request.can_read_body:
            body = await self._body(request)
            options = body.get("deleteOptions") if isinstance(body, dict) else None
            value = options.get("gracePeriodSeconds") if isinstance(options, dict) else None
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise BadRequest("deleteOptions.gracePeriodSeconds must be an integer >= 0")
                grace = value
        status = await self.evict(
            "default" if namespace == NO_NAMESPACE else namespace, request.match_info["name"], grace
        )
        return web.json_response(status, status=201, dumps=_dumps)

    async def _transaction(self, request: web.Request) -> web.Response:
        ops = parse_ops(await self._body(request))
        result = await self.write(ops)
        body = {"resourceVersion": result.resource_version, "results": [r.to_json() for r in result.results]}
        return web.json_response(body, dumps=_dumps)

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        raw_rv = request.query.get("resourceVersion", "")
        try:
            since = int(raw_rv) if raw_rv else self.store.revision
            timeout = float(request.query["timeoutSeconds"]) if "timeoutSeconds" in request.query else None
        except ValueError as exc:
            raise BadRequest(f"bad watch parameter: {exc}") from exc
        kinds = frozenset(request.query.getall("kind", [])) or None
        if self._closing.is_set():
            raise Unavailable("the store is shutting down")
        watcher = _Watcher(kinds, self.watch_queue_limit)
        watcher.push(self.store.events_since(since, kinds))  # Gone → HTTP 410 before streaming
        self._watchers.add(watcher)  # same loop step as the backlog: no event can fall between
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
            await self._stream(watcher, response, deadline)
            return response
        finally:
            self._watchers.discard(watcher)
            if task is not None:
                self._streams.discard(task)

    async def _stream(self, watcher: _Watcher, response: web.StreamResponse, deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        last_write = loop.time()
        try:
            while True:
                if watcher.overflow:
                    message = "the watcher fell too far behind; relist"
                    error = {"code": 410, "reason": Gone.reason, "message": message}
                    event = {"type": ERROR, "code": 410, "message": message, "object": error}
                    await response.write(_line(event))
                    break
                if watcher.pending:
                    batch = list(watcher.pending)
                    watcher.pending.clear()
                    await response.write(b"".join(_line(event.to_json()) for event in batch))
                    last_write = loop.time()
                    continue
                if self._closing.is_set():
                    break
                now = loop.time()
                if deadline is not None and now >= deadline:
                    break
                if now - last_write >= self.bookmark_interval:
                    # idle and caught up: every event up to the current revision has been sent
                    mark = {"kind": "Bookmark", "metadata": {"resourceVersion": str(self.store.revision)}}
                    await response.write(_line({"type": BOOKMARK, "object": mark}))
                    last_write = loop.time()
                    continue
                wait = last_write + self.bookmark_interval - now
                if deadline is not None:
                    wait = min(wait, deadline - now)
                watcher.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watcher.wake.wait(), wait)
            await response.write_eof()
        except (ConnectionError, RuntimeError) as exc:
            _log.debug("store: watcher went away: %s", exc)
