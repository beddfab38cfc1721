"""The node-reboot experiment's wire check: plaintext is any packet from the node (its enrolled pods'
addresses, its own) on a port outside FABRIC_PORTS; shown catching plaintext (the control)."""

from __future__ import annotations

from ambit.chaos.reboot_fault import plaintext_packets
from ambit.runtime.pcap import Packet

NODE_POD = "10.244.2.3"
OTHER_POD = "10.244.1.3"


def test_hbone_and_the_control_plane_are_not_plaintext() -> None:
    packets = [
        Packet(NODE_POD, 40000, OTHER_POD, 15008),  # HBONE out
        Packet(NODE_POD, 15008, OTHER_POD, 40001),  # HBONE answered from the node
        Packet("172.30.0.12", 40002, OTHER_POD, 15012),  # the node's ztunnel to the control plane
    ]
    assert plaintext_packets(packets, {NODE_POD, "172.30.0.12"}) == 0


def test_an_app_talking_past_the_mesh_is_counted_both_ways_from_the_node_only() -> None:
    packets = [
        Packet(NODE_POD, 40000, OTHER_POD, 8080),  # an uncaptured app's request: plaintext
        Packet(OTHER_POD, 8080, NODE_POD, 40000),  # its answer, from another node: not the node's
        Packet(NODE_POD, 8080, OTHER_POD, 40003),  # the node's pod answering in plaintext
    ]
    assert plaintext_packets(packets, {NODE_POD}) == 2
    assert plaintext_packets(packets, {"10.244.2.9"}) == 0
