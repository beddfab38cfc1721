"""The local runtime's network layout (DESIGN §3) as a pure plan: names, addresses, routes, steps.

Nothing here does I/O. :mod:`ambit.runtime.netns` executes the ``steps`` of a plan in order.

Names (cluster ``C`` matches ``[a-z0-9-]{1,12}``, so every name stays short):

- network namespaces: ``ambit-C-fabric``, ``ambit-C-node<i>`` (i = 1..N), ``ambit-C-pod-<short>``
  where ``short`` is 8 lowercase hex digits from the pod uid (:func:`pod_short`). The three suffix
  forms can never be confused with another cluster's names (:func:`owns_netns`), so a sweep by name
  touches only its own cluster even when one cluster's name is a prefix of another's ("a", "a-b").
- interfaces (≤ 15 chars, and each lives in one of our namespaces, so clusters never clash):
  fabric ``br0`` + ``n<i>`` (bridge port of node i); node ``eth0`` (underlay) + ``p<n>`` (host side of
  the pod whose address is ``10.244.<i>.<n>``); pod ``eth0``.

Addresses:

- underlay ``172.30.0.<10+i>/24`` on node i's ``eth0``; the fabric bridge holds ``172.30.0.1/24``
  (:data:`FABRIC_STORE_ADDRESS`), where the runtime's store listens for the nodes' heartbeats, so a
  node cut off the fabric stops renewing its Lease.
- pods ``10.244.<i>.<n>/32``, ``n`` from 2 upward, the lowest free number first (reused after
  removal). The pod's default route goes to the link-local gateway ``169.254.1.1`` on ``eth0``.
- every node holds ``169.254.1.1/32`` (the pods' gateway, so the node answers the pods' ARP for it) and
  ``169.254.7.127/32`` (the readiness-probe source) on its ``lo``, with ``scope host`` so the kernel
  never picks them as the source of the node's own connections: a probe binds ``169.254.7.127``
  explicitly, everything else the node sends leaves from its underlay address (routes carry ``src``).
  The node also has ``proxy_arp`` (with no delay) on every ``p<n>``, as Calico does.
- node routes: a ``/32`` to each of its pods via ``p<n>``, ``10.244.<j>.0/24 via 172.30.0.<10+j>``
  for every other node j, and ``10.96.0.0/16 dev eth0`` so that a connection *from the node netns*
  to a VIP has a route before the service table's output hook DNATs it (addresses in that range that
  are not a service are rejected there, so nothing is sent to the underlay for them). No default
  route anywhere: a cluster cannot reach a real network.

Sysctls (set in our namespaces only, right after creating each one and before any interface exists,
because a new namespace inherits IPv4 ``conf/all`` and ``conf/default`` from the host):

- all: IPv6 off on new interfaces (``default.disable_ipv6=1``; ``lo`` keeps ``::1``), ARP answering at
  the kernel defaults (``arp_ignore``/``arp_announce``/``arp_filter`` = 0).
- node: ``ip_forward=1``, strict reverse-path filtering (a pod cannot spoof another pod's address), no
  ICMP redirects, ``tcp_migrate_req=1``.
- pod: no forwarding, ``rp_filter=0`` (spoofing is stopped at the node), ``tcp_migrate_req=1``
  (DESIGN §5).
- fabric: no forwarding; the bridge does not pass frames through netfilter (``bridge-nf-call-*=0``,
  when ``br_netfilter`` is loaded).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ambit.runtime import services

CLUSTER_NAME_RE = re.compile(r"[a-z0-9-]{1,12}")
POD_SHORT_RE = re.compile(r"[0-9a-f]{8}")
NETNS_PREFIX = "ambit-"

UNDERLAY_PREFIXLEN = 24
UNDERLAY_BASE = 10  # node i is 172.30.0.<10+i>
FABRIC_STORE_ADDRESS = "172.30.0.1"  # on the fabric bridge: the store's listener for node heartbeats
POD_SUPERNET = ipaddress.IPv4Network("10.244.0.0/16")
SERVICE_CIDR = services.SERVICE_CIDR
GATEWAY_IP = "169.254.1.1"
PROBE_SOURCE = "169.254.7.127"

BRIDGE = "br0"
NODE_UPLINK = "eth0"
POD_IF = "eth0"
IFNAMSIZ = 15  # usable characters in a Linux interface name

FIRST_POD_HOST = 2
LAST_POD_HOST = 254
MAX_NODES = 254 - UNDERLAY_BASE

COMMON_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv6.conf.default.disable_ipv6", "1"),
    ("net.ipv4.conf.all.arp_ignore", "0"),
    ("net.ipv4.conf.default.arp_ignore", "0"),
    ("net.ipv4.conf.all.arp_announce", "0"),
    ("net.ipv4.conf.default.arp_announce", "0"),
    ("net.ipv4.conf.all.arp_filter", "0"),
    ("net.ipv4.conf.default.arp_filter", "0"),
)
NODE_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.rp_filter", "1"),
    ("net.ipv4.conf.default.rp_filter", "1"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
    ("net.ipv4.tcp_migrate_req", "1"),
)
POD_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv4.ip_forward", "0"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    ("net.ipv4.tcp_migrate_req", "1"),
)
FABRIC_SYSCTLS: tuple[tuple[str, str], ...] = (("net.ipv4.ip_forward", "0"),)
BRIDGE_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.bridge.bridge-nf-call-iptables", "0"),
    ("net.bridge.bridge-nf-call-ip6tables", "0"),
    ("net.bridge.bridge-nf-call-arptables", "0"),
)


class PlanError(ValueError):
    """The layout or the request cannot be planned (bad name, index out of range, range exhausted)."""


# --- steps: what netns.py executes, in order -------------------------------------------------------


@dataclass(frozen=True)
class AddNetns:
    """``ip netns add`` for each name (one ``ip -batch``)."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Sysctl:
    """Write sysctls inside ``netns`` (never the host's). ``optional``: keys may be absent."""

    netns: str
    settings: tuple[tuple[str, str], ...]
    optional: bool = False


@dataclass(frozen=True)
class IpBatch:
    """``ip -n <netns> -batch -`` with these lines; stops at the first failing line."""

    netns: str
    commands: tuple[str, ...]


@dataclass(frozen=True)
class NftScript:
    """``nft -f -`` inside ``netns``: one atomic transaction."""

    netns: str
    script: str


Step = AddNetns | Sysctl | IpBatch | NftScript


# --- layout ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSpec:
    name: str
    index: int
    zone: str = ""


@dataclass(frozen=True)
class ClusterLayout:
    name: str
    nodes: tuple[NodeSpec, ...]

    def __init__(self, name: str, nodes: Iterable[NodeSpec]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "nodes", tuple(sorted(nodes, key=lambda n: n.index)))
        validate_cluster_name(name)
        if not self.nodes:
            raise PlanError("a cluster needs at least one node")
        indexes = [n.index for n in self.nodes]
        if len(set(indexes)) != len(indexes):
            raise PlanError(f"duplicate node index in {indexes}")
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise PlanError(f"duplicate node name in {names}")
        for index in indexes:
            _check_node_index(index)

    def node(self, index: int) -> NodeSpec:
        for n in self.nodes:
            if n.index == index:
                return n
        raise PlanError(f"cluster {self.name} has no node {index}")

    @classmethod
    def simple(cls, name: str, node_count: int) -> ClusterLayout:
        """Nodes ``node1``..``nodeN`` with indexes 1..N and no zones."""
        return cls(name, [NodeSpec(f"node{i}", i) for i in range(1, node_count + 1)])


def validate_cluster_name(name: str) -> None:
    if not CLUSTER_NAME_RE.fullmatch(name):
        raise PlanError(f"cluster name {name!r} must match {CLUSTER_NAME_RE.pattern}")


def _check_node_index(index: int) -> None:
    if not 1 <= index <= MAX_NODES:
        raise PlanError(f"node index {index} out of range 1..{MAX_NODES}")


# --- names -------------------------------------------------------------------------------------------


def fabric_netns(cluster: str) -> str:
    return f"{NETNS_PREFIX}{cluster}-fabric"


def node_netns(cluster: str, index: int) -> str:
    return f"{NETNS_PREFIX}{cluster}-node{index}"


def pod_netns(cluster: str, short: str) -> str:
    return f"{NETNS_PREFIX}{cluster}-pod-{short}"


def owns_netns(cluster: str, name: str) -> bool:
    """True for exactly the namespace names this cluster creates (and never another cluster's)."""
    validate_cluster_name(cluster)
    suffix = r"(?:fabric|node[1-9][0-9]*|pod-[0-9a-f]{8})"
    return re.fullmatch(re.escape(f"{NETNS_PREFIX}{cluster}-") + suffix, name) is not None


def pod_short(uid: str) -> str:
    """The 8-hex id in a pod's netns name: the first 8 hex digits of a UUID-shaped uid (so
    ``ambit-C-pod-3f2a1b9c`` greps to its pod), otherwise the start of the uid's SHA-256."""
    compact = uid.replace("-", "").lower()
    if re.fullmatch(r"[0-9a-f]{8,}", compact):
        return compact[:8]
    return hashlib.sha256(uid.encode()).hexdigest()[:8]


def fabric_port(index: int) -> str:
    return f"n{index}"


def pod_veth(host: int) -> str:
    return f"p{host}"


# --- addresses ---------------------------------------------------------------------------------------


def underlay_ip(index: int) -> str:
    _check_node_index(index)
    return f"172.30.0.{UNDERLAY_BASE + index}"


def pod_cidr(index: int) -> str:
    _check_node_index(index)
    return f"10.244.{index}.0/24"


def pod_ip(index: int, host: int) -> str:
    if not FIRST_POD_HOST <= host <= LAST_POD_HOST:
        raise PlanError(f"pod host number {host} out of range {FIRST_POD_HOST}..{LAST_POD_HOST}")
    return f"10.244.{index}.{host}"


def allocate_pod_host(used: Iterable[int]) -> int:
    """The lowest free host number on a node (2..254), so addresses are reused after removal."""
    taken = set(used)
    for host in range(FIRST_POD_HOST, LAST_POD_HOST + 1):
        if host not in taken:
            return host
    raise PlanError("pod CIDR exhausted")


# --- plans -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    dst: str
    dev: str
    via: str | None = None
    src: str | None = None
    scope: str | None = None

    def command(self) -> str:
        parts = ["route", "add", self.dst]
        if self.via:
            parts += ["via", self.via]
        parts += ["dev", self.dev]
        if self.scope:
            parts += ["scope", self.scope]
        if self.src:
            parts += ["src", self.src]
        return " ".join(parts)


@dataclass(frozen=True)
class NodePlan:
    index: int
    name: str
    zone: str
    netns: str
    underlay_ip: str
    pod_cidr: str
    fabric_port: str
    uplink: str = NODE_UPLINK
    local_addresses: tuple[str, ...] = (f"{GATEWAY_IP}/32", f"{PROBE_SOURCE}/32")
    routes: tuple[Route, ...] = ()

    @property
    def underlay_cidr(self) -> str:
        return f"{self.underlay_ip}/{UNDERLAY_PREFIXLEN}"

    def commands(self) -> tuple[str, ...]:
        return (
            "link set dev lo up",
            *(f"addr add {a} dev lo scope host" for a in self.local_addresses),
            f"link set dev {self.uplink} up",
            f"addr add {self.underlay_cidr} dev {self.uplink}",
            *(r.command() for r in self.routes),
        )


@dataclass(frozen=True)
class FabricPlan:
    netns: str
    bridge: str
    ports: tuple[tuple[str, str], ...]  # (fabric-side veth, node netns)

    def commands(self) -> tuple[str, ...]:
        lines = [
            "link set dev lo up",
            f"link add name {self.bridge} type bridge",
            f"link set dev {self.bridge} up",
            f"addr add {FABRIC_STORE_ADDRESS}/{UNDERLAY_PREFIXLEN} dev {self.bridge}",
        ]
        for port, netns in self.ports:
            lines += [
                f"link add name {port} type veth peer name {NODE_UPLINK} netns {netns}",
                f"link set dev {port} master {self.bridge}",
                f"link set dev {port} up",
            ]
        return tuple(lines)


@dataclass(frozen=True)
class ClusterPlan:
    cluster: str
    layout: ClusterLayout
    fabric: FabricPlan
    nodes: tuple[NodePlan, ...]
    steps: tuple[Step, ...] = field(repr=False)

    @property
    def netns_names(self) -> tuple[str, ...]:
        return (self.fabric.netns, *(n.netns for n in self.nodes))

    def node(self, index: int) -> NodePlan:
        for n in self.nodes:
            if n.index == index:
                return n
        raise PlanError(f"cluster {self.cluster} has no node {index}")


@dataclass(frozen=True)
class PodPlan:
    cluster: str
    short: str
    netns: str
    node_index: int
    node_netns: str
    host: int
    ip: str
    node_veth: str
    pod_if: str
    gateway: str
    node_route: Route
    routes: tuple[Route, ...]
    steps: tuple[Step, ...] = field(repr=False)


def plan_node(layout: ClusterLayout, spec: NodeSpec) -> NodePlan:
    routes = tuple(
        Route(pod_cidr(other.index), NODE_UPLINK, via=underlay_ip(other.index))
        for other in layout.nodes
        if other.index != spec.index
    )
    # connect() from the node netns itself needs a route for a VIP before the output hook DNATs it
    routes += (Route(str(SERVICE_CIDR), NODE_UPLINK, scope="link", src=underlay_ip(spec.index)),)
    return NodePlan(
        index=spec.index,
        name=spec.name,
        zone=spec.zone,
        netns=node_netns(layout.name, spec.index),
        underlay_ip=underlay_ip(spec.index),
        pod_cidr=pod_cidr(spec.index),
        fabric_port=fabric_port(spec.index),
        routes=routes,
    )


def plan_cluster(layout: ClusterLayout) -> ClusterPlan:
    nodes = tuple(plan_node(layout, spec) for spec in layout.nodes)
    fabric = FabricPlan(
        netns=fabric_netns(layout.name),
        bridge=BRIDGE,
        ports=tuple((n.fabric_port, n.netns) for n in nodes),
    )
    steps: list[Step] = [AddNetns((fabric.netns, *(n.netns for n in nodes)))]
    steps.append(Sysctl(fabric.netns, COMMON_SYSCTLS + FABRIC_SYSCTLS))
    steps.append(Sysctl(fabric.netns, BRIDGE_SYSCTLS, optional=True))
    steps += [Sysctl(n.netns, COMMON_SYSCTLS + NODE_SYSCTLS) for n in nodes]
    steps.append(IpBatch(fabric.netns, fabric.commands()))
    steps += [IpBatch(n.netns, n.commands()) for n in nodes]
    steps += [NftScript(n.netns, services.replace_script(())) for n in nodes]
    return ClusterPlan(layout.name, layout, fabric, nodes, tuple(steps))


def plan_pod(layout: ClusterLayout, node_index: int, host: int, short: str) -> PodPlan:
    """The pod with address ``10.244.<node_index>.<host>`` and netns ``ambit-C-pod-<short>``."""
    if not POD_SHORT_RE.fullmatch(short):
        raise PlanError(f"pod short id {short!r} must be 8 lowercase hex digits")
    node = plan_node(layout, layout.node(node_index))
    ip = pod_ip(node_index, host)
    netns = pod_netns(layout.name, short)
    veth = pod_veth(host)
    node_route = Route(f"{ip}/32", veth, scope="link", src=node.underlay_ip)
    routes = (
        Route(f"{GATEWAY_IP}/32", POD_IF, scope="link"),
        Route("default", POD_IF, via=GATEWAY_IP, src=ip),
    )
    node_side = (
        f"link add name {veth} type veth peer name {POD_IF} netns {netns}",
        f"link set dev {veth} up",
        node_route.command(),
    )
    pod_side = (
        "link set dev lo up",
        f"link set dev {POD_IF} up",
        f"addr add {ip}/32 dev {POD_IF}",
        *(r.command() for r in routes),
    )
    steps: tuple[Step, ...] = (
        AddNetns((netns,)),
        Sysctl(netns, COMMON_SYSCTLS + POD_SYSCTLS),
        IpBatch(node.netns, node_side),
        Sysctl(node.netns, _veth_sysctls(veth)),
        IpBatch(netns, pod_side),
    )
    return PodPlan(
        cluster=layout.name,
        short=short,
        netns=netns,
        node_index=node_index,
        node_netns=node.netns,
        host=host,
        ip=ip,
        node_veth=veth,
        pod_if=POD_IF,
        gateway=GATEWAY_IP,
        node_route=node_route,
        routes=routes,
        steps=steps,
    )


def _veth_sysctls(veth: str) -> tuple[tuple[str, str], ...]:
    return ((f"net.ipv4.conf.{veth}.proxy_arp", "1"), (f"net.ipv4.neigh.{veth}.proxy_delay", "0"))


def interface_names(plan: ClusterPlan, pods: Sequence[PodPlan] = ()) -> tuple[str, ...]:
    """Every interface name a plan creates (for the ≤ 15 character check)."""
    names = [plan.fabric.bridge, *(p for p, _ in plan.fabric.ports), *(n.uplink for n in plan.nodes)]
    names += [name for pod in pods for name in (pod.node_veth, pod.pod_if)]
    return tuple(names)
