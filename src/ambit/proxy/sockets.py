"""Where a proxy's sockets come from: the one seam between the proxy logic and a network namespace.

Every socket ztunnel makes for a pod (its three listeners, upstream connections to apps, HBONE and
passthrough connections to other pods) is made through a :class:`SocketFactory`, so the same proxy
code runs on loopback in tests and inside each pod's network namespace in production:

* :class:`SystemSocketFactory` makes sockets in the calling thread's namespace. It marks them with
  ``SO_MARK`` (the capture rules let marked packets through), binds the original client's IP with
  ``IP_TRANSPARENT`` when asked to (so the app sees the real client), and reads the original
  destination of a captured connection with ``getsockopt(SOL_IP, SO_ORIGINAL_DST)`` (it works on
  uvloop's ``PseudoSocket`` too). Creating the socket object is :meth:`SystemSocketFactory.create`,
  the single override point: a pod-namespace factory (next: ``NetnsSocketFactory``) creates the
  socket on a thread that has ``setns``-ed into the pod's namespace and inherits everything else —
  a socket belongs to the namespace it was created in, whatever thread later binds or connects it.
* :class:`LoopbackSocketFactory` is for tests without privileges: no marks, ``transparent`` is a plain
  bind (any 127/8 address is local), and original destinations come from a table filled by
  :meth:`LoopbackSocketFactory.capture_connect`, which plays the part of the pod's nftables redirect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Protocol

from ambit.net.connect import connect_numeric
from ambit.net.duplex import TcpDuplex

Address = tuple[str, int]

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST has the same value at SOL_IPV6
IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
IPV6_TRANSPARENT = 75
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_SOCKADDR_IN = 16
_SOCKADDR_IN6 = 28

# TCP keepalive on proxied sockets, as ztunnel (facts §1.3): 180 s idle, 180 s interval, 9 probes.
KEEPALIVE_IDLE = 180
KEEPALIVE_INTERVAL = 180
KEEPALIVE_PROBES = 9


class OriginalDestinationError(OSError):
    """The original destination of a captured connection cannot be read."""


class SocketFactory(Protocol):
    """Makes the sockets of one pod (one network namespace); see the module docstring."""

    def original_destination(self, transport: asyncio.BaseTransport) -> Address:
        """Where the client meant to connect before the capture rules redirected it to ztunnel."""
        ...

    async def listen(self, address: Address, *, transparent: bool = False) -> socket.socket:
        """A non-blocking listening socket on ``address`` (SO_REUSEADDR and SO_REUSEPORT set)."""
        ...

    async def connect_socket(
        self,
        dst: Address,
        *,
        source_ip: str | None = None,
        transparent: bool = False,
        mark: int | None = None,
        connect_timeout: float | None = None,
    ) -> socket.socket:
        """A connected non-blocking TCP socket to ``dst`` (from ``source_ip`` when given)."""
        ...

    async def connect_upstream(
        self,
        dst: Address,
        *,
        source_ip: str | None = None,
        transparent: bool = False,
        mark: int | None = None,
        connect_timeout: float | None = None,
    ) -> TcpDuplex:
        """:meth:`connect_socket` wrapped in a :class:`~ambit.net.duplex.TcpDuplex`."""
        ...


def parse_sockaddr(raw: bytes) -> Address:
    """(ip, port) from a raw ``sockaddr_in`` / ``sockaddr_in6`` as ``getsockopt`` returns it."""
    if len(raw) < 4:
        raise OriginalDestinationError(f"sockaddr of {len(raw)} bytes is too short")
    family = struct.unpack_from("=H", raw)[0]
    (port,) = struct.unpack_from("!H", raw, 2)
    if family == socket.AF_INET and len(raw) >= 8:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    if family == socket.AF_INET6 and len(raw) >= 24:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    raise OriginalDestinationError(f"unexpected sockaddr family {family} ({len(raw)} bytes)")


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _is_v6(ip: str) -> bool:
    return ":" in ip and not ip.lower().startswith("::ffff:")


class SystemSocketFactory:
    """Sockets in the calling thread's network namespace, with marks and transparent binds."""

    def __init__(self, *, apply_marks: bool = True, allow_transparent: bool = True) -> None:
        self.apply_marks = apply_marks
        self.allow_transparent = allow_transparent

    async def create(self, family: socket.AddressFamily) -> socket.socket:
        """A new TCP socket object: the override point for a factory working in another namespace."""
        return socket.socket(family, socket.SOCK_STREAM)

    def original_destination(self, transport: asyncio.BaseTransport) -> Address:
        sock = transport.get_extra_info("socket")
        local = transport.get_extra_info("sockname")
        if sock is None or not local:
            raise OriginalDestinationError("the transport has no socket")
        try:
            if _is_v6(str(local[0])):
                raw = sock.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, _SOCKADDR_IN6)
            else:
                raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN)
        except OSError as exc:
            raise OriginalDestinationError(f"SO_ORIGINAL_DST: {exc}") from exc
        return parse_sockaddr(raw)

    async def listen(self, address: Address, *, transparent: bool = False) -> socket.socket:
        sock = await self.create(_family(address[0]))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if transparent:
                self._transparent(sock, address[0])
            sock.bind(address)
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def connect_socket(
        self,
        dst: Address,
        *,
        source_ip: str | None = None,
        transparent: bool = False,
        mark: int | None = None,
        connect_timeout: float | None = None,
    ) -> socket.socket:
        sock = await self.create(_family(dst[0]))
        try:
            sock.setblocking(False)
            if mark is not None and self.apply_marks:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
            _keepalive(sock)
            if source_ip is not None:
                if transparent:
                    self._transparent(sock, source_ip)
                with contextlib.suppress(OSError):  # a port is picked at connect: fewer collisions
                    sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source_ip, 0))
            connect = connect_numeric(sock, dst)
            if connect_timeout is None:
                await connect
            else:
                await asyncio.wait_for(connect, connect_timeout)
        except TimeoutError as exc:
            sock.close()
            raise TimeoutError(f"connect to {dst[0]}:{dst[1]} timed out after {connect_timeout} s") from exc
        except BaseException:
            sock.close()
            raise
        return sock

    async def connect_upstream(
        self,
        dst: Address,
        *,
        source_ip: str | None = None,
        transparent: bool = False,
        mark: int | None = None,
        connect_timeout: float | None = None,
    ) -> TcpDuplex:
        sock = await self.connect_socket(
            dst, source_ip=source_ip, transparent=transparent, mark=mark, connect_timeout=connect_timeout
        )
        try:
            _transport, duplex = await asyncio.get_running_loop().create_connection(TcpDuplex, sock=sock)
        except BaseException:
            sock.close()
            raise
        return duplex

    def _transparent(self, sock: socket.socket, ip: str) -> None:
        """IP_TRANSPARENT: bind an address that is not local (the original client's)."""
        if not self.allow_transparent:
            return
        if _is_v6(ip):
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
        else:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)


def _keepalive(sock: socket.socket) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


class LoopbackSocketFactory(SystemSocketFactory):
    """For tests on loopback, no privileges: a table stands in for the capture rules.

    No marks are set and ``transparent`` degrades to a plain bind, which works because every 127/8
    address is local. :meth:`original_destination` looks the client's address (the accepted
    connection's peer) up in the table that :meth:`redirect` / :meth:`capture_connect` fill, and
    raises :class:`OriginalDestinationError` for a connection nobody registered.
    """

    def __init__(self) -> None:
        super().__init__(apply_marks=False, allow_transparent=False)
        self._table: dict[Address, Address] = {}

    def redirect(self, client: Address, original: Address) -> None:
        """The connection from ``client`` was meant for ``original``."""
        self._table[client] = original

    def original_destination(self, transport: asyncio.BaseTransport) -> Address:
        peer = transport.get_extra_info("peername")
        if not peer:
            raise OriginalDestinationError("the transport has no peer address")
        original = self._table.pop((str(peer[0]), int(peer[1])), None)
        if original is None:
            raise OriginalDestinationError(f"no original destination registered for {peer[0]}:{peer[1]}")
        return original

    async def capture_connect(self, source_ip: str, original: Address, listener: Address) -> TcpDuplex:
        """What an app at ``source_ip`` gets when it connects to ``original`` and the capture rules
        send it to ``listener`` (a ztunnel listener): the connection, from ``source_ip``."""
        sock = socket.socket(_family(source_ip), socket.SOCK_STREAM)
        client: Address | None = None
        try:
            sock.setblocking(False)
            sock.bind((source_ip, 0))
            host, port = sock.getsockname()[:2]
            client = (str(host), int(port))
            self.redirect(client, original)
            await asyncio.get_running_loop().sock_connect(sock, listener)
            _transport, duplex = await asyncio.get_running_loop().create_connection(TcpDuplex, sock=sock)
        except BaseException:
            if client is not None:
                self._table.pop(client, None)
            sock.close()
            raise
        return duplex
