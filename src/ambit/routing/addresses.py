"""Address helpers shared by the outbound and inbound planners: parsing IPs and CIDRs, a workload's
address of one IP family, its SPIFFE identity.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from ambit.model.identity import Identity, IdentityError
from ambit.model.workload import (
    Workload,
)
from ambit.routing.plans import IPAddress, IPNetwork

# --- addresses ------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def parse_ip(text: str) -> IPAddress | None:
    try:
        address: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=256)
def parse_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...] | None:
    try:
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
    except ValueError:
        return None


def address_for(workload: Workload, version: int) -> str | None:
    """The workload's first address of IP ``version``, else its first parsable address."""
    fallback: str | None = None
    for text in workload.addresses:
        address = parse_ip(text)
        if address is None:
            continue
        if address.version == version:
            return str(address)
        if fallback is None:
            fallback = str(address)
    return fallback


def identity_of(workload: Workload) -> Identity | None:
    try:
        return workload.identity
    except IdentityError:
        return None
