"""The node netns service table: ClusterIP DNAT for non-mesh pods (the kube-proxy role, DESIGN §3).

One nftables table, ``ip ambit-svc``, per node netns. It is always rendered whole from the current
service → ready-endpoints mapping and swapped in one ``nft -f`` transaction (:func:`replace_script`),
so a packet sees either the old table or the new one, never a mix.

- **Where.** ``prerouting`` (packets from the node's own pods arrive on their ``p<k>`` veth) and
  ``output`` (connections made from the node netns itself). Packets arriving from other nodes already
  carry a pod IP: DNAT happens once, on the client's node, as kube-proxy does.
- **Lookup.** One verdict map ``services``: ``VIP . protocol . port`` → ``goto`` the service's chain.
- **Endpoint choice.** ``numgen random mod N map { i : ip . port }``: uniform random per connection
  (a nat chain only sees a connection's first packet; conntrack carries the choice for the rest).
  This is what kube-proxy's nftables mode does. ``jhash`` was not chosen: it pins a client to one
  endpoint, which hides uneven load in tests and benchmarks.
- **No endpoints.** The service chain rejects (TCP reset / ICMP port unreachable), so a client sees
  "connection refused" at once, like kube-proxy, instead of a routing error. Any other address in
  the service range (unknown VIP or port) is rejected the same way, so it never leaves the node.
- **Hairpin.** A pod that reaches itself through a VIP would get a packet whose source is its own
  address, which it drops as martian; such flows are SNATed to the node's link-local gateway
  address (``169.254.1.1``), as kube-proxy masquerades hairpin traffic.

Only ready endpoints belong in the mapping; the caller filters.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

TABLE = "ambit-svc"
SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/16")
HAIRPIN_SNAT = "169.254.1.1"  # the pods' link-local gateway, an address of every node (netplan)

Protocol = Literal["tcp", "udp"]


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.ip)
        _check_port(self.port)


@dataclass(frozen=True)
class ServicePort:
    """One ``VIP:port/protocol`` and the ready endpoints behind it."""

    vip: str
    port: int
    protocol: Protocol = "tcp"
    endpoints: tuple[Endpoint, ...] = field(default=())

    def __post_init__(self) -> None:
        if ipaddress.IPv4Address(self.vip) not in SERVICE_CIDR:
            raise ValueError(f"service VIP {self.vip} is outside {SERVICE_CIDR}")
        _check_port(self.port)
        if self.protocol not in ("tcp", "udp"):
            raise ValueError(f"unsupported protocol {self.protocol!r}")
        object.__setattr__(self, "endpoints", tuple(self.endpoints))

    @property
    def key(self) -> tuple[int, int, str]:
        return (int(ipaddress.IPv4Address(self.vip)), self.port, self.protocol)

    @property
    def chain(self) -> str:
        return f"svc-{self.vip.replace('.', '-')}-{self.protocol}-{self.port}"


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range")


def render_table(ports: Iterable[ServicePort]) -> str:
    """The complete ``table ip ambit-svc { ... }`` for this mapping (deterministic order)."""
    entries = sorted(ports, key=lambda p: p.key)
    seen: set[tuple[int, int, str]] = set()
    for entry in entries:
        if entry.key in seen:
            raise ValueError(f"duplicate service port {entry.vip}:{entry.port}/{entry.protocol}")
        seen.add(entry.key)

    lines = [f"table ip {TABLE} {{"]
    lines += ["\tmap services {", "\t\ttype ipv4_addr . inet_proto . inet_service : verdict"]
    if entries:
        elements = ", ".join(f"{e.vip} . {e.protocol} . {e.port} : goto {e.chain}" for e in entries)
        lines.append(f"\t\telements = {{ {elements} }}")
    lines.append("\t}")

    hairpin = sorted({ep.ip for e in entries for ep in e.endpoints}, key=ipaddress.IPv4Address)
    lines += ["\tset hairpin {", "\t\ttype ipv4_addr . ipv4_addr"]
    if hairpin:
        lines.append(f"\t\telements = {{ {', '.join(f'{ip} . {ip}' for ip in hairpin)} }}")
    lines.append("\t}")

    for hook in ("prerouting", "output"):
        lines += [
            f"\tchain {hook} {{",
            f"\t\ttype nat hook {hook} priority -100; policy accept;",
            "\t\tip daddr . meta l4proto . th dport vmap @services",
            f"\t\tip daddr {SERVICE_CIDR} meta l4proto tcp reject with tcp reset",
            f"\t\tip daddr {SERVICE_CIDR} reject with icmp type port-unreachable",
            "\t}",
        ]
    lines += [
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority 100; policy accept;",
        f"\t\tct status dnat ip saddr . ip daddr @hairpin snat to {HAIRPIN_SNAT}",
        "\t}",
    ]
    for entry in entries:
        lines += [f"\tchain {entry.chain} {{", *(f"\t\t{rule}" for rule in _service_rules(entry)), "\t}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _service_rules(entry: ServicePort) -> list[str]:
    endpoints = sorted(set(entry.endpoints))
    if not endpoints:
        if entry.protocol == "tcp":
            return ["meta l4proto tcp reject with tcp reset"]
        return ["reject with icmp type port-unreachable"]
    match = f"meta l4proto {entry.protocol}"
    if len(endpoints) == 1:
        return [f"{match} dnat to {endpoints[0].ip}:{endpoints[0].port}"]
    choices = ", ".join(f"{i} : {ep.ip} . {ep.port}" for i, ep in enumerate(endpoints))
    return [f"{match} dnat to numgen random mod {len(endpoints)} map {{ {choices} }}"]


def replace_script(ports: Iterable[ServicePort]) -> str:
    """An ``nft -f`` script that swaps in the new table atomically (one transaction).

    ``table ip X`` first makes the following ``delete`` valid even when the table does not exist yet.
    """
    return f"table ip {TABLE}\ndelete table ip {TABLE}\n" + render_table(ports)


def delete_script() -> str:
    """An ``nft -f`` script that removes the table, and succeeds when it is already gone."""
    return f"table ip {TABLE}\ndelete table ip {TABLE}\n"
