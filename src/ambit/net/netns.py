"""Create sockets (or run short functions) inside a network namespace, from any thread of any process.

Sockets are made on a **dedicated, short-lived thread** that ``setns(2)``s into the target namespace,
creates the socket, switches back and checks that it is back where it started. Why this is safe:

- A network namespace is a property of each *thread* (its ``nsproxy``), not of the process.
  ``setns(fd, CLONE_NEWNET)`` changes only the calling thread, so the event loop and every other thread
  stay in the host (or node) namespace throughout. (Mount and user namespaces are different: they
  cannot be entered by one thread of a multi-threaded process; the network namespace can.)
- A socket belongs to the namespace its creating thread was in when ``socket()`` ran, for its whole
  life; ``bind``/``connect``/``accept``/IO from any thread afterwards happen in that namespace.
- Restoring is checked (the thread's ``/proc/thread-self/ns/net`` must be the inode it started with),
  and the thread is never reused, so even a failed restore cannot leak a namespace switch into other work.
- Pitfalls: ``/proc/net`` (= ``/proc/self/net``) follows the thread-group leader, not the switched
  thread; use ``/proc/thread-self/net``. Subprocesses started from the switched thread inherit its
  namespace. Python 3.11 has no ``os.setns`` (3.12+), so we call libc's ``setns`` through ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
THREAD_NETNS = "/proc/thread-self/ns/net"

T = TypeVar("T")

Target = str | int | os.PathLike[str]
"""A netns name (under ``/run/netns``), a path to a netns file, or an open netns file descriptor."""


class NetnsError(RuntimeError):
    pass


def netns_path(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise NetnsError(f"bad netns name {name!r}")
    return os.path.join(NETNS_RUN_DIR, name)


# --- per-thread setns ----------------------------------------------------------------------------------

_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    if sys.version_info >= (3, 12):
        os.setns(fd, CLONE_NEWNET)
        return
    global _libc  # noqa: PLW0603 (loaded once, lazily)
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _ns_id(fd_or_path: int | str) -> tuple[int, int]:
    st = os.fstat(fd_or_path) if isinstance(fd_or_path, int) else os.stat(fd_or_path)
    return (st.st_dev, st.st_ino)


def current_netns_id() -> tuple[int, int]:
    """(dev, inode) of the calling thread's network namespace."""
    return _ns_id(THREAD_NETNS)


def netns_id(target: Target) -> tuple[int, int]:
    """(dev, inode) of a namespace, to compare with :func:`current_netns_id`."""
    if isinstance(target, int):
        return _ns_id(target)
    if isinstance(target, str) and "/" not in target:
        return _ns_id(netns_path(target))
    return _ns_id(os.fspath(target))


@contextlib.contextmanager
def _open_target(target: Target) -> Iterator[int]:
    if isinstance(target, int):
        yield target
        return
    path = netns_path(target) if isinstance(target, str) and "/" not in target else os.fspath(target)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def call_in_netns(target: Target, fn: Callable[[], T], *, timeout: float = 30.0) -> T:
    """Run ``fn`` on a fresh thread that is inside ``target``'s network namespace; return its result.

    Blocking; from an event loop, call it through ``asyncio.to_thread``. ``fn`` should be quick
    (create and configure sockets); long work belongs on the socket afterwards, from any thread.
    """
    outcome: dict[str, Any] = {}

    def worker() -> None:
        try:
            outcome["value"] = _switched(target, fn)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=worker, name=f"netns:{target}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise NetnsError(f"call in netns {target} did not finish in {timeout}s")
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def _switched(target: Target, fn: Callable[[], T]) -> T:
    home = os.open(THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        home_id = _ns_id(home)
        with _open_target(target) as fd:
            _setns(fd)
        try:
            return fn()
        finally:
            _setns(home)
            if current_netns_id() != home_id:
                raise NetnsError("thread did not return to its original network namespace")
    finally:
        os.close(home)


_thread_home = threading.local()


def socket_here_in_netns(
    netns_fd: int, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0
) -> socket.socket:
    """A socket in the namespace behind ``netns_fd``, made on the *calling* thread in microseconds.

    The thread ``setns``-es into the namespace, calls ``socket()`` and nothing else, and ``setns``-es
    back to the namespace it had on its first call here (kept open per thread). This is the per-
    connection path of a proxy's event loop; :func:`socket_in_netns` is the general one (any setup,
    a fresh thread). If the way back fails, the thread would go on in the pod's namespace: that must
    never happen, so the process ends at once (fail closed; a supervisor restarts it).
    """
    home = getattr(_thread_home, "fd", None)
    if home is None:
        home = os.open(THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        _thread_home.fd = home
    _setns(netns_fd)
    try:
        return socket.socket(family, type, proto)
    finally:
        try:
            _setns(home)
        except BaseException as exc:  # pragma: no cover - the kernel refused our own namespace back
            os.write(2, f"fatal: cannot return to the home network namespace: {exc}\n".encode())
            os._exit(70)


def socket_in_netns(
    target: Target,
    family: int = socket.AF_INET,
    type: int = socket.SOCK_STREAM,
    proto: int = 0,
    *,
    setup: Callable[[socket.socket], None] | None = None,
) -> socket.socket:
    """A socket that lives in ``target``'s network namespace.

    ``setup`` (optional) runs on the switched thread right after creation (setsockopt, bind, listen);
    it may as well run afterwards from any thread, since the socket keeps its namespace. The socket is
    closed if ``setup`` fails.
    """

    def make() -> socket.socket:
        sock = socket.socket(family, type, proto)
        try:
            if setup is not None:
                setup(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    return call_in_netns(target, make)
