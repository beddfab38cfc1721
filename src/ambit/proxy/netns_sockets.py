"""Sockets inside a pod's network namespace: :class:`NetnsSocketFactory`.

The node agent hands ztunnel an open file descriptor of each enrolled pod's network namespace (ZDS
``AddWorkload`` + SCM_RIGHTS). Every socket ztunnel makes *for that pod* (its three listeners, the
upstream connections to the app, HBONE and passthrough connections to other pods) must live in that
namespace, while ztunnel's own event loop stays in the node's namespace.

:class:`NetnsSocketFactory` overrides only :meth:`~ambit.proxy.sockets.SystemSocketFactory.create`:
the loop thread ``setns``-es into the pod namespace for the one ``socket()`` call and straight back
(:func:`ambit.net.netns.socket_here_in_netns`, a few microseconds; the way ztunnel does it). It used
to be a fresh thread per socket behind ``asyncio.to_thread``, which capped new connections at a few
hundred per second (BENCHMARKS.md, connection setup).
Everything else (SO_REUSEPORT, IP_TRANSPARENT, SO_MARK 0x539, SO_ORIGINAL_DST, bind, connect) is the
system factory's, applied afterwards from the loop thread: a socket keeps the namespace it was created
in for its whole life.

The factory does not own the fd: whoever received it (the agent client) keeps it open while the pod is
served and closes it when the pod is removed.
"""

from __future__ import annotations

import os
import socket

from ambit.net.netns import netns_id, socket_here_in_netns
from ambit.proxy.sockets import SystemSocketFactory


class NetnsSocketFactory(SystemSocketFactory):
    """A :class:`SystemSocketFactory` whose sockets live in the network namespace behind ``netns_fd``."""

    def __init__(self, netns_fd: int, *, apply_marks: bool = True, allow_transparent: bool = True) -> None:
        super().__init__(apply_marks=apply_marks, allow_transparent=allow_transparent)
        os.fstat(netns_fd)  # fail now on a closed descriptor, not at the first connection
        self.netns_fd = netns_fd

    @property
    def netns_id(self) -> tuple[int, int]:
        """(dev, inode) of the namespace: identifies the pod's netns across descriptors."""
        return netns_id(self.netns_fd)

    async def create(self, family: socket.AddressFamily) -> socket.socket:
        return socket_here_in_netns(self.netns_fd, family, socket.SOCK_STREAM)

    def __repr__(self) -> str:
        return f"NetnsSocketFactory(fd={self.netns_fd})"
