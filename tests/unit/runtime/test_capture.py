"""capture: the ambient pod's nftables ruleset and policy routing (pure rendering)."""

from __future__ import annotations

from ambit.runtime import capture


def chain(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"\tchain {name} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_table_and_hooks() -> None:
    text = capture.ruleset()
    assert text.startswith("table inet ambit-capture {\n")
    assert chain(text, "prerouting-mangle")[0] == "type filter hook prerouting priority -150; policy accept;"
    # a route chain, so restoring the mark re-routes the packet
    assert chain(text, "output-mangle")[0] == "type route hook output priority -150; policy accept;"
    assert chain(text, "prerouting-nat")[0] == "type nat hook prerouting priority -100; policy accept;"
    assert chain(text, "output-nat")[0] == "type nat hook output priority -100; policy accept;"


def test_outbound_redirect_to_15001_unless_marked_or_local() -> None:
    rules = chain(capture.ruleset(), "output-nat")[1:]
    assert rules[-1] == "meta l4proto tcp redirect to :15001"
    exemptions = rules[:-1]
    assert "meta l4proto != tcp accept" in exemptions
    assert "meta mark & 0xfff == 0x539 accept" in exemptions
    assert "ip daddr 127.0.0.0/8 accept" in exemptions
    assert 'oifname "lo" accept' in exemptions
    assert "ct mark & 0xfff == 0x111 accept" in exemptions


def test_inbound_redirect_to_15006_except_hbone_and_probes() -> None:
    rules = chain(capture.ruleset(), "prerouting-nat")[1:]
    assert rules[-1] == "meta l4proto tcp redirect to :15006"
    exemptions = rules[:-1]
    assert "tcp dport 15008 accept" in exemptions
    assert "ip saddr 169.254.7.127 accept" in exemptions
    assert "meta mark & 0xfff == 0x539 accept" in exemptions
    assert "ip daddr 127.0.0.0/8 accept" in exemptions


def test_connmark_save_and_restore() -> None:
    text = capture.ruleset()
    assert chain(text, "prerouting-mangle")[1] == (
        "meta mark & 0xfff == 0x539 ct mark set ct mark & 0xfffff000 | 0x111"
    )
    assert chain(text, "output-mangle")[1] == "ct mark & 0xfff == 0x111 meta mark set ct mark"


def test_policy_routing_uses_the_connection_mark_not_ztunnel_mark() -> None:
    # 0x539 also marks ztunnel's outbound HBONE sockets; routing those to lo would keep them in the pod
    assert capture.route_commands() == (
        "rule add fwmark 0x111/0xfff pref 32764 lookup 133",
        "route replace local 0.0.0.0/0 dev lo table 133",
    )
    assert capture.route_remove_commands() == (
        "rule del fwmark 0x111/0xfff pref 32764 lookup 133",
        "route flush table 133",
    )


def test_scripts_are_atomic_and_idempotent() -> None:
    apply = capture.apply_script()
    assert apply.startswith(
        "table inet ambit-capture\ndelete table inet ambit-capture\ntable inet ambit-capture {"
    )
    assert apply.endswith(capture.ruleset())
    assert capture.remove_script() == "table inet ambit-capture\ndelete table inet ambit-capture\n"
