"""netplan: names, addresses, routes and steps of the local runtime's network (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from ambit.runtime import netplan, services
from ambit.runtime.netplan import AddNetns, ClusterLayout, IpBatch, NftScript, NodeSpec, PlanError, Sysctl


def layout(n: int = 3, name: str = "demo") -> ClusterLayout:
    return ClusterLayout(name, [NodeSpec(f"node{i}", i, zone=f"z{i % 2}") for i in range(1, n + 1)])


@pytest.mark.parametrize("name", ["a", "ambit", "c-1", "abcdefghijkl", "0"])
def test_valid_cluster_names(name: str) -> None:
    ClusterLayout.simple(name, 1)


@pytest.mark.parametrize("name", ["", "Upper", "abcdefghijklm", "a_b", "a.b", "a/b", "a b"])
def test_invalid_cluster_names(name: str) -> None:
    with pytest.raises(PlanError):
        ClusterLayout.simple(name, 1)


def test_layout_validation() -> None:
    with pytest.raises(PlanError):
        ClusterLayout("c", [])
    with pytest.raises(PlanError):
        ClusterLayout("c", [NodeSpec("a", 1), NodeSpec("b", 1)])
    with pytest.raises(PlanError):
        ClusterLayout("c", [NodeSpec("a", 1), NodeSpec("a", 2)])
    with pytest.raises(PlanError):
        ClusterLayout("c", [NodeSpec("a", 0)])
    with pytest.raises(PlanError):
        ClusterLayout("c", [NodeSpec("a", netplan.MAX_NODES + 1)])
    big = ClusterLayout("c", [NodeSpec("a", netplan.MAX_NODES)])
    assert netplan.plan_cluster(big).nodes[0].underlay_ip == "172.30.0.254"


def test_names() -> None:
    assert netplan.fabric_netns("c") == "ambit-c-fabric"
    assert netplan.node_netns("c", 3) == "ambit-c-node3"
    assert netplan.pod_netns("c", "0123abcd") == "ambit-c-pod-0123abcd"


def test_owns_netns_is_exact_per_cluster() -> None:
    assert netplan.owns_netns("a", "ambit-a-fabric")
    assert netplan.owns_netns("a", "ambit-a-node12")
    assert netplan.owns_netns("a", "ambit-a-pod-0123abcd")
    # another cluster whose name starts with ours
    for other in ("ambit-a-b-fabric", "ambit-a-b-node1", "ambit-a-pod-pod-0123abcd", "ambit-a-node1-fabric"):
        assert not netplan.owns_netns("a", other), other
    for junk in (
        "ambit-a-node0",
        "ambit-a-node",
        "ambit-a-pod-XYZ",
        "ambit-a-pod-0123abc",
        "ambit-ab-fabric",
    ):
        assert not netplan.owns_netns("a", junk), junk
    assert not netplan.owns_netns("a", "other-a-fabric")
    # every name a cluster plans is one it owns, and no other cluster owns it
    plan = netplan.plan_cluster(layout(3, "a-b"))
    pod = netplan.plan_pod(plan.layout, 1, 2, "deadbeef")
    for name in (*plan.netns_names, pod.netns):
        assert netplan.owns_netns("a-b", name)
        assert not netplan.owns_netns("a", name)
        assert not netplan.owns_netns("b", name)


def test_pod_short() -> None:
    assert netplan.pod_short("3F2A1B9C-0000-4000-8000-000000000001") == "3f2a1b9c"
    hashed = netplan.pod_short("not-a-uuid")
    assert len(hashed) == 8 and int(hashed, 16) >= 0
    assert netplan.pod_short("not-a-uuid") == hashed  # stable
    assert netplan.pod_short("not-a-uuid-2") != hashed


def test_allocate_pod_host_lowest_free() -> None:
    assert netplan.allocate_pod_host([]) == 2
    assert netplan.allocate_pod_host([2, 3, 5]) == 4
    assert netplan.allocate_pod_host(range(2, 200)) == 200
    with pytest.raises(PlanError):
        netplan.allocate_pod_host(range(2, 255))


def test_cluster_plan_addresses_and_routes() -> None:
    plan = netplan.plan_cluster(layout(3))
    assert plan.netns_names == (
        "ambit-demo-fabric",
        "ambit-demo-node1",
        "ambit-demo-node2",
        "ambit-demo-node3",
    )
    assert plan.fabric.bridge == "br0"
    assert plan.fabric.ports == (
        ("n1", "ambit-demo-node1"),
        ("n2", "ambit-demo-node2"),
        ("n3", "ambit-demo-node3"),
    )
    n2 = plan.node(2)
    assert n2.name == "node2" and n2.zone == "z0"
    assert n2.underlay_ip == "172.30.0.12" and n2.underlay_cidr == "172.30.0.12/24"
    assert n2.pod_cidr == "10.244.2.0/24"
    assert [r.command() for r in n2.routes] == [
        "route add 10.244.1.0/24 via 172.30.0.11 dev eth0",
        "route add 10.244.3.0/24 via 172.30.0.13 dev eth0",
        "route add 10.96.0.0/16 dev eth0 scope link src 172.30.0.12",
    ]
    assert n2.commands() == (
        "link set dev lo up",
        "addr add 169.254.1.1/32 dev lo scope host",
        "addr add 169.254.7.127/32 dev lo scope host",
        "link set dev eth0 up",
        "addr add 172.30.0.12/24 dev eth0",
        "route add 10.244.1.0/24 via 172.30.0.11 dev eth0",
        "route add 10.244.3.0/24 via 172.30.0.13 dev eth0",
        "route add 10.96.0.0/16 dev eth0 scope link src 172.30.0.12",
    )
    # no default route anywhere, and every address is in a cluster range
    for node in plan.nodes:
        assert all(r.dst != "default" for r in node.routes)
        assert ipaddress.IPv4Address(node.underlay_ip) in ipaddress.IPv4Network("172.30.0.0/24")
        assert ipaddress.IPv4Network(node.pod_cidr).subnet_of(netplan.POD_SUPERNET)


def test_cluster_plan_steps_order() -> None:
    plan = netplan.plan_cluster(layout(2))
    kinds = [type(s).__name__ for s in plan.steps]
    assert kinds == [
        "AddNetns",
        "Sysctl",
        "Sysctl",
        "Sysctl",
        "Sysctl",
        "IpBatch",
        "IpBatch",
        "IpBatch",
        "NftScript",
        "NftScript",
    ]
    add = plan.steps[0]
    assert isinstance(add, AddNetns) and add.names == plan.netns_names
    # sysctls come before any interface exists, and only inside our namespaces
    sysctls = [s for s in plan.steps if isinstance(s, Sysctl)]
    assert {s.netns for s in sysctls} == set(plan.netns_names)
    node_sysctls = dict(next(s for s in sysctls if s.netns == "ambit-demo-node1").settings)
    assert node_sysctls["net.ipv4.ip_forward"] == "1"
    assert node_sysctls["net.ipv4.tcp_migrate_req"] == "1"
    assert node_sysctls["net.ipv6.conf.default.disable_ipv6"] == "1"
    bridge = [s for s in sysctls if s.optional]
    assert len(bridge) == 1 and bridge[0].netns == "ambit-demo-fabric"
    fabric = plan.steps[5]
    assert isinstance(fabric, IpBatch) and fabric.netns == "ambit-demo-fabric"
    assert fabric.commands[:3] == (
        "link set dev lo up",
        "link add name br0 type bridge",
        "link set dev br0 up",
    )
    assert "link add name n2 type veth peer name eth0 netns ambit-demo-node2" in fabric.commands
    assert "link set dev n2 master br0" in fabric.commands
    nft = [s for s in plan.steps if isinstance(s, NftScript)]
    assert [s.script for s in nft] == [services.replace_script(())] * 2


def test_ip_commands_always_name_their_device() -> None:
    """`ip link add a ...` parses `a` as `address`; every command spells `name`/`dev` out."""
    plan = netplan.plan_cluster(layout(2))
    pod = netplan.plan_pod(plan.layout, 1, 2, "0123abcd")
    batches = [s for s in (*plan.steps, *pod.steps) if isinstance(s, IpBatch)]
    for line in (c for b in batches for c in b.commands):
        words = line.split()
        if words[:2] == ["link", "add"]:
            assert words[2] == "name", line
        elif words[:2] == ["link", "set"]:
            assert words[2] == "dev", line


def test_pod_plan() -> None:
    lay = layout(3)
    pod = netplan.plan_pod(lay, 2, 7, "0123abcd")
    assert pod.netns == "ambit-demo-pod-0123abcd"
    assert pod.node_netns == "ambit-demo-node2"
    assert pod.ip == "10.244.2.7"
    assert pod.node_veth == "p7" and pod.pod_if == "eth0"
    assert pod.gateway == "169.254.1.1"
    assert pod.node_route.command() == "route add 10.244.2.7/32 dev p7 scope link src 172.30.0.12"
    assert [r.command() for r in pod.routes] == [
        "route add 169.254.1.1/32 dev eth0 scope link",
        "route add default via 169.254.1.1 dev eth0 src 10.244.2.7",
    ]
    add, pod_sysctl, node_batch, node_sysctl, pod_batch = pod.steps
    assert add == AddNetns(("ambit-demo-pod-0123abcd",))
    assert isinstance(pod_sysctl, Sysctl) and pod_sysctl.netns == pod.netns
    assert dict(pod_sysctl.settings)["net.ipv4.tcp_migrate_req"] == "1"
    assert node_batch == IpBatch(
        "ambit-demo-node2",
        (
            "link add name p7 type veth peer name eth0 netns ambit-demo-pod-0123abcd",
            "link set dev p7 up",
            "route add 10.244.2.7/32 dev p7 scope link src 172.30.0.12",
        ),
    )
    assert node_sysctl == Sysctl(
        "ambit-demo-node2", (("net.ipv4.conf.p7.proxy_arp", "1"), ("net.ipv4.neigh.p7.proxy_delay", "0"))
    )
    assert isinstance(pod_batch, IpBatch) and pod_batch.netns == pod.netns
    assert pod_batch.commands == (
        "link set dev lo up",
        "link set dev eth0 up",
        "addr add 10.244.2.7/32 dev eth0",
        "route add 169.254.1.1/32 dev eth0 scope link",
        "route add default via 169.254.1.1 dev eth0 src 10.244.2.7",
    )


def test_pod_plan_rejects_bad_input() -> None:
    lay = layout(2)
    with pytest.raises(PlanError):
        netplan.plan_pod(lay, 3, 2, "0123abcd")  # no such node
    with pytest.raises(PlanError):
        netplan.plan_pod(lay, 1, 1, "0123abcd")  # .1 is not a pod address
    with pytest.raises(PlanError):
        netplan.plan_pod(lay, 1, 255, "0123abcd")
    with pytest.raises(PlanError):
        netplan.plan_pod(lay, 1, 2, "0123ABCD")


def test_interface_names_fit_ifnamsiz() -> None:
    lay = ClusterLayout("abcdefghijkl", [NodeSpec(f"n{i}", i) for i in (1, 2, netplan.MAX_NODES)])
    plan = netplan.plan_cluster(lay)
    pods = [netplan.plan_pod(lay, netplan.MAX_NODES, netplan.LAST_POD_HOST, "ffffffff")]
    names = netplan.interface_names(plan, pods)
    assert "n244" in names and "p254" in names
    assert all(0 < len(n) <= netplan.IFNAMSIZ for n in names)
