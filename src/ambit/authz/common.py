"""What the L4 and L7 evaluators share: policy CIDRs and addresses, three-valued logic, and Istio's
order of decision (:func:`decide`).

Pure, stdlib only. A comparison that involves something that does not parse (a policy entry that is
not a CIDR, an address that is not an IP) is *unknown* (``None``); unknowns propagate (an OR with a
true part is true, an AND with a false part is false, otherwise unknown), and each evaluator resolves
what is left fail-closed by the policy's action.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Protocol, TypeVar

from ambit.model.policy import Action

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


class Policy(Protocol):
    """What :func:`decide` reads of a policy (L4 ``Authorization`` and ``L7Authorization`` alike)."""

    @property
    def key(self) -> str: ...
    @property
    def action(self) -> Action: ...
    @property
    def dry_run(self) -> bool: ...


P = TypeVar("P", bound=Policy)
Verdict = tuple[bool, str, str | None, tuple[str, ...]]  # allowed, reason, deciding policy, dry-run matches


def resolve(action: Action, result: Tri) -> bool:
    """Fail closed on unknowns: an ALLOW needs a certain match, a DENY matches unless certainly not."""
    if action is Action.DENY:
        return result is not False
    return result is True


def decide(policies: Iterable[P], evaluate: Callable[[P], Tri], *, once_per_key: bool = False) -> Verdict:
    """Istio's order: dry-run policies never decide (their matches are reported); any DENY that matches
    (or may: unknowns fail closed) denies; with no ALLOW policy the request is allowed; otherwise an
    ALLOW must certainly match. The deciding policy is the first in the order given; with
    ``once_per_key`` a policy given twice (by key) counts once (the waypoint's lists may repeat one that
    targets both the Gateway and the Service)."""
    dry_run: list[str] = []
    allows: list[P] = []
    denied_by: P | None = None
    deny_unknown = False
    seen: set[str] = set()
    for policy in policies:
        if once_per_key:
            if policy.key in seen:
                continue
            seen.add(policy.key)
        if policy.dry_run:
            if resolve(policy.action, evaluate(policy)):
                dry_run.append(policy.key)
        elif policy.action is Action.DENY:
            if denied_by is None:
                result = evaluate(policy)
                if result is not False:
                    denied_by, deny_unknown = policy, result is None
        else:
            allows.append(policy)
    dry = tuple(dry_run)
    if denied_by is not None:
        reason = f"denied by DENY policy {denied_by.key}"
        if deny_unknown:
            reason += " (it holds an address that does not parse; failing closed)"
        return False, reason, denied_by.key, dry
    if not allows:
        return True, "allowed: no ALLOW policy applies", None, dry
    for policy in allows:
        if evaluate(policy) is True:
            return True, f"allowed by ALLOW policy {policy.key}", policy.key, dry
    return False, "no ALLOW policy matched", None, dry
