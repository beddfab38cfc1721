"""The ``forwarded`` header of RFC 7239, written and read (sans-IO).

An HBONE client names the original client in its CONNECT (``forwarded: for="<ip[:port]>"[;host=<service>]``,
as ztunnel does; :func:`format_forwarded`); the server reads the first element back
(:func:`parse_forwarded`). Whether the server *trusts* it is not decided here (see
:func:`ambit.routing.inbound_source`).

Grammar (RFC 7239 §4): elements separated by ``,``, parameters by ``;``, each ``name=value`` where
the value is a token or a quoted string (``\\`` escapes the next character). A node is an IP, an
IPv6 in brackets, either with an optional ``:port``, or ``unknown`` / an obfuscated ``_identifier``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Headers = Iterable[tuple[str, str]]

HEADER = "forwarded"

# RFC 9110 tchar: what a value may hold without quotes.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


# --- writer ----------------------------------------------------------------------------------------


def _value(text: str) -> str:
    """``text`` as a parameter value: itself when it is a token, else a quoted string."""
    if text and all(ch in _TOKEN_CHARS for ch in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_forwarded(source_ip: str, *, source_port: int | None = None, host: str | None = None) -> str:
    """The header value naming the original client: ``for="<ip[:port]>"[;host=<host>]``.

    The node is always quoted (RFC 7239 requires it for IPv6 and ports), IPv6 in brackets; a host that
    is not a token (never a service FQDN) is quoted too.
    """
    node = f"[{source_ip}]" if ":" in source_ip else source_ip
    if source_port is not None:
        node = f"{node}:{source_port}"
    value = f'for="{node}"'
    if host:
        value += f";host={_value(host)}"
    return value


# --- parser ----------------------------------------------------------------------------------------


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _node_ip(node: str) -> str | None:
    """The IP of an RFC 7239 node (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]``, ``[::1]:80``), else None."""
    if node.startswith("["):
        end = node.find("]")
        if end < 0 or (node[end + 1 :] and not node[end + 1 :].startswith(":")):
            return None
        host = node[1:end]
    elif node.count(":") == 1:
        host = node.split(":", 1)[0]
    else:
        host = node
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # "unknown", an obfuscated "_identifier", or garbage
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def parse_forwarded(headers: Headers) -> tuple[str | None, str | None]:
    """(``for`` IP, ``host``) of the first ``forwarded`` element (the original client), or Nones.

    Follows RFC 7239: parameters separated by ``;``, elements by ``,``, values optionally quoted; an
    IPv6 node is bracketed and may carry a port. A ``for`` that is not an IP (``unknown``, an
    obfuscated identifier) gives None; a duplicated parameter makes the element invalid.
    """
    value = next((v for k, v in headers if k.lower() == HEADER), None)
    if value is None:
        return None, None
    element = _split_outside_quotes(value, ",")[0]
    params: dict[str, str] = {}
    for pair in _split_outside_quotes(element, ";"):
        if "=" not in pair:
            continue
        name, _, raw = pair.partition("=")
        name = name.strip().lower()
        if name in params:
            return None, None
        params[name] = _unquote(raw)
    ip = _node_ip(params["for"]) if "for" in params else None
    host = params.get("host") or None
    return ip, host


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts
