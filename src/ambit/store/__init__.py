"""The cluster store: Kubernetes-style objects on disk, list + watch over HTTP on a Unix socket.

``server.StoreServer`` is the one-per-cluster server (``ambit store serve``); ``client.StoreClient``
is the asyncio client every component uses, and ``informer.Informer`` the list + watch cache built on
it. ``paths`` says where a cluster's socket and data live.
"""

from __future__ import annotations

from ambit.store.client import StoreClient
from ambit.store.informer import Informer
from ambit.store.paths import cluster_dir, data_dir, socket_path
from ambit.store.types import (
    ADDED,
    BOOKMARK,
    DELETED,
    MODIFIED,
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    Key,
    ListResult,
    NotFound,
    Obj,
    Op,
    OpResult,
    StoreError,
    TransactionResult,
    Unavailable,
    WatchEvent,
    object_key,
)

__all__ = [
    "ADDED",
    "BOOKMARK",
    "DELETED",
    "MODIFIED",
    "AlreadyExists",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Gone",
    "Informer",
    "Invalid",
    "Key",
    "ListResult",
    "NotFound",
    "Obj",
    "Op",
    "OpResult",
    "StoreClient",
    "StoreError",
    "TransactionResult",
    "Unavailable",
    "WatchEvent",
    "cluster_dir",
    "data_dir",
    "object_key",
    "socket_path",
]
