"""What the L4 and L7 evaluators share: policy CIDRs and addresses, and three-valued logic.

Pure, stdlib only. A comparison that involves something that does not parse (a policy entry that is
not a CIDR, an address that is not an IP) is *unknown* (``None``); unknowns propagate (an OR with a
true part is true, an AND with a false part is false, otherwise unknown), and each evaluator resolves
what is left fail-closed by the policy's action.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Three-valued logic: True, False, or None (unknown).
Tri = bool | None

_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")


@lru_cache(maxsize=4096)
def parse_cidr(text: str) -> IPNetwork | None:
    """A policy CIDR as a network (IPv4-mapped networks as IPv4), or None when it is not one."""
    try:
        network: IPNetwork = ipaddress.ip_network(text, strict=False)
    except (ValueError, TypeError):
        return None
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= 96
        and network.subnet_of(_MAPPED_V4)
    ):
        base = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((base, network.prefixlen - 96))
    return network


@lru_cache(maxsize=4096)
def parse_ip(text: str) -> IPAddress | None:
    """A connection address (IPv4-mapped as IPv4), or None when it is not one."""
    try:
        address: IPAddress = ipaddress.ip_address(text)
    except (ValueError, TypeError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def ip_in(address: IPAddress | None, cidr: str) -> Tri:
    """Whether ``address`` is inside ``cidr``; unknown when either does not parse."""
    network = parse_cidr(cidr)
    if network is None or address is None:
        return None
    if network.version != address.version:
        return False
    return address in network


def ips_any(cidrs: tuple[str, ...], address: IPAddress | None) -> Tri:
    """Whether ``address`` is inside any of ``cidrs`` (three-valued)."""
    return any3(ip_in(address, cidr) for cidr in cidrs)


def any3(values: Iterable[Tri]) -> Tri:
    result: Tri = False
    for value in values:
        if value is True:
            return True
        if value is None:
            result = None
    return result


def all3(values: Iterable[Tri]) -> Tri:
    result: Tri = True
    for value in values:
        if value is False:
            return False
        if value is None:
            result = None
    return result


def not3(value: Tri) -> Tri:
    return None if value is None else not value
