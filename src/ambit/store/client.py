"""The asyncio client of the store server (see ``ambit.store.server`` for the HTTP API).

    async with StoreClient(paths.socket_path("ambit")) as store:
        svc = await store.get("Service", "productpage", "default")
        svc["metadata"]["labels"]["tier"] = "web"
        await store.update(svc)                       # Conflict if someone wrote it since the get
        listing = await store.list(["Pod", "Service"])
        async with contextlib.aclosing(store.watch(listing.resource_version, ["Pod"])) as events:
            async for event in events: ...            # Gone: relist

Every failure is a ``StoreError`` (``Conflict`` 409, ``NotFound`` 404, ``Invalid`` 422, ``Gone`` 410,
``Unavailable`` when the store cannot be reached or the connection drops).

``StoreClient`` is the first implementation of ``ambit.resources.source.ObjectSource`` (checked by
mypy at the end of this module).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterable, Sequence
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import aiohttp

if TYPE_CHECKING:
    from ambit.resources.source import ObjectSource

from ambit.store.types import (
    ERROR,
    Gone,
    ListResult,
    Obj,
    Op,
    OpResult,
    StoreError,
    TransactionResult,
    Unavailable,
    WatchEvent,
    error_from_json,
)

_BASE: Final = "http://store"
_MAX_LINE: Final = 64 * 1024 * 1024
_JSON: Final = {"Content-Type": "application/json"}


def _q(part: str) -> str:
    return quote(part, safe="")


def object_path(kind: str, name: str, namespace: str | None = None) -> str:
    return f"/objects/{_q(kind)}/{_q(namespace or '_')}/{_q(name)}"


class StoreClient:
    """A connection pool to one store server; create and use it on one event loop, close it when done."""

    def __init__(self, socket_path: str | PathLike[str], *, timeout: float = 30.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> StoreClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.UnixConnector(path=str(self.socket_path))
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    def _unreachable(self, exc: BaseException) -> Unavailable:
        return Unavailable(f"cannot reach the store at {self.socket_path}: {exc or type(exc).__name__}")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        body: Any = None,
    ) -> Any:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        try:
            async with self._ensure().request(
                method, _BASE + path, params=list(params), data=data, headers=_JSON if data else None
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._unreachable(exc) from exc
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if status >= 400:
            raise error_from_json(status, parsed if isinstance(parsed, dict) else None)
        return parsed

    # -- reads -----------------------------------------------------------------------------------

    async def health(self) -> Obj:
        result: Obj = await self._request("GET", "/healthz")
        return result

    async def get(self, kind: str, name: str, namespace: str | None = None) -> Obj:
        """One object; NotFound if absent. A namespaced kind without a namespace means ``default``."""
        result: Obj = await self._request("GET", object_path(kind, name, namespace))
        return result

    async def list(
        self,
        kinds: str | Iterable[str] | None = None,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> ListResult:
        """Objects of `kinds` (every kind when None) in `namespace` (all when None), and the revision."""
        params: list[tuple[str, str]] = []
        if isinstance(kinds, str):
            kinds = [kinds]
        params.extend(("kind", kind) for kind in kinds or ())
        if namespace:
            params.append(("namespace", namespace))
        if label_selector:
            params.append(("labelSelector", label_selector))
        body = await self._request("GET", "/objects", params=params)
        return ListResult(items=list(body["items"]), resource_version=str(body["resourceVersion"]))

    # -- writes ----------------------------------------------------------------------------------

    async def create(self, obj: Obj) -> Obj:
        """Create; AlreadyExists (a Conflict) if present. Returns the stored object (uid, resourceVersion)."""
        result: Obj = await self._request("POST", "/objects", body=obj)
        return result

    async def update(self, obj: Obj) -> Obj:
        """Compare-and-swap: Conflict unless ``metadata.resourceVersion`` is the stored one."""
        meta = obj.get("metadata") or {}
        path = object_path(str(obj.get("kind")), str(meta.get("name")), meta.get("namespace"))
        result: Obj = await self._request("PUT", path, body=obj)
        return result

    async def delete(
        self,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        uid: str | None = None,
        grace_period: int | None = None,
    ) -> Obj:
        """Delete (and everything it owns); with `resource_version` / `uid`, only if unchanged since
        then / the same object. A Pod on a node is deleted gracefully (`grace_period` seconds, default
        its own); the returned pod then carries its ``deletionTimestamp``."""
        params = [("resourceVersion", resource_version)] if resource_version else []
        if uid:
            params.append(("uid", uid))
        if grace_period is not None:
            params.append(("gracePeriodSeconds", str(grace_period)))
        result: Obj = await self._request("DELETE", object_path(kind, name, namespace), params=params)
        return result

    async def evict(self, name: str, namespace: str | None = None, *, grace_period: int | None = None) -> Obj:
        """The Eviction subresource: delete the pod if its PodDisruptionBudget allows; TooManyRequests
        (429) naming the budget if not. Returns the server's Status."""
        body: Obj = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
        if grace_period is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace_period}
        path = object_path("Pod", name, namespace) + "/eviction"
        result: Obj = await self._request("POST", path, body=body)
        return result

    async def apply(self, obj: Obj) -> OpResult:
        """Create or replace without a precondition (``kubectl apply``)."""
        return (await self.transaction([Op("apply", obj)])).results[0]

    async def transaction(self, ops: Sequence[Op]) -> TransactionResult:
        """All operations or none; the error of the first failing one carries its `index`."""
        body = await self._request("POST", "/transaction", body={"operations": [op.to_json() for op in ops]})
        return TransactionResult(
            resource_version=str(body["resourceVersion"]),
            results=[OpResult.from_json(r) for r in body["results"]],
        )

    # -- watch -----------------------------------------------------------------------------------

    async def watch(
        self,
        resource_version: str | int,
        kinds: Iterable[str] | None = None,
        *,
        timeout_seconds: float | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every change after `resource_version`, in order, then BOOKMARKs while idle.

        Raises Gone when the store's history no longer reaches back (relist and watch again) and
        Unavailable when the connection fails. Ends when the server ends the stream. Close it with
        ``contextlib.aclosing`` when you stop early.
        """
        params: list[tuple[str, str]] = [("resourceVersion", str(resource_version))]
        params.extend(("kind", kind) for kind in kinds or ())
        if timeout_seconds is not None:
            params.append(("timeoutSeconds", str(timeout_seconds)))
        session = self._ensure()
        try:
            async with session.get(
                _BASE + "/watch",
                params=params,
                timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_connect=self.timeout),
            ) as response:
                if response.status != 200:
                    raw = await response.read()
                    try:
                        parsed = json.loads(raw) if raw else None
                    except ValueError:
                        parsed = None
                    raise error_from_json(response.status, parsed if isinstance(parsed, dict) else None)
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    if len(buffer) > _MAX_LINE:
                        raise StoreError("a watch event exceeds the size limit")
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield self._event(line)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._unreachable(exc) from exc

    @staticmethod
    def _event(line: bytes) -> WatchEvent:
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise StoreError(f"malformed watch event: {exc}") from exc
        if data.get("type") == ERROR:
            code = int(data.get("code") or (data.get("object") or {}).get("code") or 500)
            message = str(data.get("message") or "watch error")
            if code == 410:
                raise Gone(message)
            raise StoreError(message, status=code)
        return WatchEvent(str(data.get("type")), data.get("object") or {})


if TYPE_CHECKING:

    def _is_an_object_source(client: StoreClient) -> ObjectSource:
        return client  # mypy checks that StoreClient satisfies ObjectSource structurally
