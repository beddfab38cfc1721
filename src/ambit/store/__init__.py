"""The cluster store: Kubernetes-style objects on disk, list + watch over HTTP on a Unix socket.

``server.StoreServer`` is the one-per-cluster server (``ambit store serve``); ``client.StoreClient``
is the asyncio client every component uses, and ``informer.Informer`` the list + watch cache built on
it. ``paths`` says where a cluster's socket and data live; ``types`` holds the objects, operations, watch
events and errors (import them from there).
"""

from __future__ import annotations

from ambit.store.client import StoreClient
from ambit.store.informer import Informer
from ambit.store.paths import cluster_dir, data_dir, socket_path

__all__ = ["Informer", "StoreClient", "cluster_dir", "data_dir", "socket_path"]
