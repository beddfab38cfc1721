"""faults: the nftables ruleset that cuts a node off the fabric (pure rendering and parsing)."""

from __future__ import annotations

import json

import pytest

from ambit.runtime import faults, netplan


def chain(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"\tchain {name} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_one_bridge_table_per_node_named_after_its_fabric_port() -> None:
    assert faults.table_name(2) == "ambit_cut_n2"
    assert faults.table_name(2).endswith(netplan.fabric_port(2))
    assert faults.ruleset(2).startswith("table bridge ambit_cut_n2 {\n")
    assert faults.table_name(12) != faults.table_name(1)


def test_every_path_through_the_port_is_dropped_both_ways() -> None:
    text = faults.ruleset(2)
    hook = "type filter hook {} priority filter; policy accept;"
    # frames between ports: from node 2 to another node, and from another node (or a flood) to node 2
    assert chain(text, "forward") == [
        hook.format("forward"),
        'iifname "n2" counter drop',
        'oifname "n2" counter drop',
    ]
    # node 2 -> the bridge's own addresses (172.30.0.1, the store's heartbeat listener)
    assert chain(text, "input") == [hook.format("input"), 'iifname "n2" counter drop']
    # the bridge's own addresses -> node 2
    assert chain(text, "output") == [hook.format("output"), 'oifname "n2" counter drop']


def test_silent_no_reject_and_only_this_port() -> None:
    text = faults.ruleset(3)
    assert "reject" not in text
    assert "accept" not in text.replace("policy accept;", "")
    ports = {word.strip('"') for line in text.splitlines() for word in line.split() if word.startswith('"')}
    assert ports == {"n3"}
    # matches the interface, not an address or protocol: every frame (ARP too) is dropped
    assert "ip " not in text
    assert "ether" not in text


def test_cut_replaces_atomically_and_heal_deletes_exactly_that_table() -> None:
    cut = faults.cut_script(2)
    assert cut.splitlines()[:2] == ["table bridge ambit_cut_n2", "delete table bridge ambit_cut_n2"]
    assert cut.endswith(faults.ruleset(2))
    heal = faults.heal_script(2)
    assert heal == "table bridge ambit_cut_n2\ndelete table bridge ambit_cut_n2\n"
    assert "n3" not in heal
    assert faults.heal_script(3) != heal


@pytest.mark.parametrize("index", [0, -1, netplan.MAX_NODES + 1])
def test_out_of_range_node_is_refused(index: int) -> None:
    with pytest.raises(faults.FaultError):
        faults.table_name(index)
    with pytest.raises(faults.FaultError):
        faults.ruleset(index)


def test_node_of_table() -> None:
    assert faults.node_of_table("ambit_cut_n2") == 2
    assert faults.node_of_table("ambit_cut_n12") == 12
    for other in ("ambit_cut_n0", "ambit_cut_n02", "ambit_cut_x2", "ambit-svc", "ambit_cut_n2x", ""):
        assert faults.node_of_table(other) is None


def _listing(*tables: tuple[str, str]) -> str:
    entries: list[dict[str, object]] = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]
    entries += [{"table": {"family": f, "name": n, "handle": i}} for i, (f, n) in enumerate(tables, 1)]
    return json.dumps({"nftables": entries})


def test_parse_cuts_reads_only_our_bridge_tables() -> None:
    listing = _listing(
        ("bridge", "ambit_cut_n2"),
        ("bridge", "ambit_cut_n10"),
        ("inet", "ambit_cut_n3"),  # wrong family: not ours
        ("bridge", "someone_else"),
        ("ip", "ambit-svc"),
    )
    assert faults.parse_cuts(listing) == {2, 10}
    assert faults.parse_cuts(_listing()) == set()
    assert faults.parse_cuts("") == set()


def test_several_nodes_have_independent_tables() -> None:
    names = {faults.table_name(i) for i in range(1, 6)}
    assert len(names) == 5
    assert all(faults.node_of_table(faults.table_name(i)) == i for i in range(1, 6))
