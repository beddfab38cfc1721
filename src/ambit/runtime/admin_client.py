"""Read a node ztunnel's admin port (``127.0.0.1:15000`` in the node's netns) from the host.

The socket is created inside the node's network namespace (:func:`ambit.net.netns.socket_in_netns`)
and a minimal HTTP/1.1 ``GET`` (``Connection: close``) is sent on it, so nothing depends on curl or on
``ip netns exec``. Used by ``ambit ztunnel-config``.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from ambit.net.netns import NetnsError, Target, socket_in_netns
from ambit.runtime import netplan
from ambit.runtime.layout import Layout, node_index, node_name, read_json

ADMIN_HOST = "127.0.0.1"
ADMIN_PORT = 15000
MAX_BODY = 64 * 1024 * 1024


class AdminError(RuntimeError):
    """The admin port could not be read; the message says why, for a person."""


def _decode_chunked(body: bytes) -> bytes:
    out = bytearray()
    while True:
        line, sep, rest = body.partition(b"\r\n")
        if not sep:
            raise AdminError("truncated chunked body")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        body = rest[size + 2 :]


def parse_response(raw: bytes) -> tuple[int, bytes]:
    """(status, body) of a complete HTTP/1.x response read until EOF."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise AdminError("incomplete HTTP response")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise AdminError(f"bad HTTP status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _decode_chunked(body)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if len(body) < length:
            raise AdminError(f"truncated body ({len(body)} of {length} bytes)")
        body = body[:length]
    return int(parts[1]), body


def http_get(
    netns: Target | None, path: str, *, host: str = ADMIN_HOST, port: int = ADMIN_PORT, timeout: float = 5.0
) -> tuple[int, bytes]:
    """``GET path`` on ``host:port`` inside ``netns`` (None: this thread's namespace); (status, body)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family) if netns is None else socket_in_netns(netns, family)
    with sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode("ascii"))
        raw = bytearray()
        while chunk := sock.recv(65536):
            raw += chunk
            if len(raw) > MAX_BODY:
                raise AdminError(f"response larger than {MAX_BODY} bytes")
    return parse_response(bytes(raw))


def node_config_dump(cluster: str, node: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """The ``/config_dump`` of ``node``'s ztunnel; :class:`AdminError` with a readable reason if not."""
    try:
        netns = netplan.node_netns(cluster, node_index(node))
    except ValueError as exc:
        raise AdminError(str(exc)) from exc
    where = f"{ADMIN_HOST}:{ADMIN_PORT} in netns {netns}"
    try:
        status, body = http_get(netns, "/config_dump", timeout=timeout)
    except FileNotFoundError as exc:
        raise AdminError(f"netns {netns} does not exist (is the cluster up?)") from exc
    except ConnectionRefusedError as exc:
        raise AdminError(f"no ztunnel is listening on {where} (connection refused)") from exc
    except TimeoutError as exc:
        raise AdminError(f"ztunnel on {where} did not answer within {timeout:g}s") from exc
    except PermissionError as exc:
        raise AdminError(f"cannot enter netns {netns}: {exc} (run as root)") from exc
    except (OSError, NetnsError) as exc:
        raise AdminError(f"reading {where}: {exc}") from exc
    if status != 200:
        raise AdminError(f"{where}: /config_dump answered HTTP {status}")
    try:
        dump = json.loads(body)
    except ValueError as exc:
        raise AdminError(f"{where}: /config_dump is not JSON: {exc}") from exc
    if not isinstance(dump, dict):
        raise AdminError(f"{where}: /config_dump is not a JSON object")
    return dump


def cluster_nodes(cluster: str) -> list[str]:
    """The node names of ``cluster`` (``node1`` … ``nodeN``, from its ``cluster.json``)."""
    path = Layout(cluster).config
    try:
        config = read_json(path)
    except FileNotFoundError:
        raise AdminError(f"cluster {cluster} does not exist ({path} not found)") from None
    except (OSError, ValueError) as exc:
        raise AdminError(f"cannot read {path}: {exc}") from exc
    return [node_name(i) for i in range(1, int(config.get("nodes", 0)) + 1)]
