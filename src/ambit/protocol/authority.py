"""The `:authority` of an HBONE CONNECT: `ip:port`, IPv6 in brackets, parsed strictly and formatted.

An HBONE tunnel's target is always a numeric address and a port (Istio's rule); anything else is a
malformed request, answered 400 by `protocol.hbone`.
"""

from __future__ import annotations

import ipaddress


def parse_authority(authority: str) -> tuple[str, int]:
    """`ip:port` or `[v6]:port` → (ip, port); ValueError with a reason otherwise."""
    if authority.startswith("["):
        host, sep, rest = authority[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad IPv6 authority {authority!r}")
        port_text = rest[1:]
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host)
    else:
        host, sep, port_text = authority.rpartition(":")
        if not sep:
            raise ValueError(f"authority {authority!r} has no port")
        addr = ipaddress.IPv4Address(host)
    if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in authority {authority!r}")
    return str(addr), int(port_text)


def format_authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
