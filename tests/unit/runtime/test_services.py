"""services: the node's ClusterIP DNAT table (pure rendering)."""

from __future__ import annotations

import pytest

from ambit.runtime.services import Endpoint, ServicePort, delete_script, render_table, replace_script


def chain(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"\tchain {name} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_empty_table() -> None:
    text = render_table([])
    assert text.startswith("table ip ambit-svc {\n")
    assert "elements" not in text
    for hook in ("prerouting", "output"):
        assert chain(text, hook) == [
            f"type nat hook {hook} priority -100; policy accept;",
            "ip daddr . meta l4proto . th dport vmap @services",
            # anything else in the service range is refused on the node, never sent on
            "ip daddr 10.96.0.0/16 meta l4proto tcp reject with tcp reset",
            "ip daddr 10.96.0.0/16 reject with icmp type port-unreachable",
        ]
    assert chain(text, "postrouting")[1] == "ct status dnat ip saddr . ip daddr @hairpin snat to 169.254.1.1"


def test_services_map_and_chains() -> None:
    ports = [
        ServicePort("10.96.0.20", 9080, "tcp", (Endpoint("10.244.2.3", 9080), Endpoint("10.244.1.2", 9080))),
        ServicePort("10.96.0.10", 80, "tcp", (Endpoint("10.244.3.2", 8080),)),
        ServicePort("10.96.0.10", 53, "udp", ()),
        ServicePort("10.96.0.11", 80, "tcp", ()),
    ]
    text = render_table(ports)
    assert (
        "elements = { 10.96.0.10 . udp . 53 : goto svc-10-96-0-10-udp-53, "
        "10.96.0.10 . tcp . 80 : goto svc-10-96-0-10-tcp-80, "
        "10.96.0.11 . tcp . 80 : goto svc-10-96-0-11-tcp-80, "
        "10.96.0.20 . tcp . 9080 : goto svc-10-96-0-20-tcp-9080 }"
    ) in text
    assert chain(text, "svc-10-96-0-10-tcp-80") == ["meta l4proto tcp dnat to 10.244.3.2:8080"]
    # several endpoints: uniform random per connection, endpoints in a stable order
    assert chain(text, "svc-10-96-0-20-tcp-9080") == [
        "meta l4proto tcp dnat to numgen random mod 2 map { 0 : 10.244.1.2 . 9080, 1 : 10.244.2.3 . 9080 }"
    ]
    # no endpoints: refused at once
    assert chain(text, "svc-10-96-0-11-tcp-80") == ["meta l4proto tcp reject with tcp reset"]
    assert chain(text, "svc-10-96-0-10-udp-53") == ["reject with icmp type port-unreachable"]
    assert "elements = { 10.244.1.2 . 10.244.1.2, 10.244.2.3 . 10.244.2.3, 10.244.3.2 . 10.244.3.2 }" in text


def test_rendering_is_deterministic() -> None:
    a = ServicePort("10.96.0.20", 80, endpoints=(Endpoint("10.244.2.3", 1), Endpoint("10.244.1.2", 1)))
    b = ServicePort("10.96.0.3", 80, endpoints=(Endpoint("10.244.1.2", 1), Endpoint("10.244.2.3", 1)))
    assert render_table([a, b]) == render_table([b, a])
    # numeric, not lexical, VIP order
    text = render_table([a, b])
    assert text.index("10.96.0.3 . tcp") < text.index("10.96.0.20 . tcp")


def test_duplicate_endpoints_collapse() -> None:
    port = ServicePort("10.96.0.1", 80, endpoints=(Endpoint("10.244.1.2", 80), Endpoint("10.244.1.2", 80)))
    assert chain(render_table([port]), "svc-10-96-0-1-tcp-80") == ["meta l4proto tcp dnat to 10.244.1.2:80"]


def test_validation() -> None:
    with pytest.raises(ValueError, match="outside"):
        ServicePort("10.97.0.1", 80)
    with pytest.raises(ValueError):
        ServicePort("10.96.0.1", 0)
    with pytest.raises(ValueError):
        ServicePort("10.96.0.1", 80, "sctp")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Endpoint("10.244.1.2", 70000)
    with pytest.raises(ValueError):
        Endpoint("not-an-ip", 80)
    with pytest.raises(ValueError, match="duplicate"):
        render_table([ServicePort("10.96.0.1", 80), ServicePort("10.96.0.1", 80)])


def test_replace_is_one_transaction() -> None:
    script = replace_script([])
    assert script.startswith("table ip ambit-svc\ndelete table ip ambit-svc\ntable ip ambit-svc {")
    assert delete_script() == "table ip ambit-svc\ndelete table ip ambit-svc\n"
