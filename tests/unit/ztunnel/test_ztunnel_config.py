"""ZtunnelConfig: Istio's defaults, validation, cluster membership of addresses."""

from __future__ import annotations

import pytest

from ambit.ztunnel.config import ZtunnelConfig


def test_defaults_are_istios() -> None:
    config = ZtunnelConfig(node="node-1")
    assert config.trust_domain == "cluster.local"
    assert config.cluster_cidrs == ("10.244.0.0/16", "10.96.0.0/16")
    assert (config.outbound_port, config.inbound_plaintext_port, config.hbone_port) == (15001, 15006, 15008)
    assert (config.admin_port, config.metrics_port, config.readiness_port) == (15000, 15020, 15021)
    assert config.mark == 0x539
    assert config.connect_timeout == 10.0
    assert config.sync_timeout == 5.0
    assert config.drain_deadline == 25.0
    assert config.policy_recheck


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"node": ""}, "node name"),
        ({"trust_domain": "Bad Domain"}, "trust domain"),
        ({"cluster_cidrs": ("10.0.0.0/33",)}, "does not parse"),
        ({"hbone_port": 0}, "out of range"),
        ({"mark": -1}, "32-bit"),
        ({"sync_timeout": -1.0}, "negative"),
        ({"outbound_attempts": 0}, "at least 1"),
    ],
)
def test_invalid_values_are_refused(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"node": "node-1", **kwargs}
    with pytest.raises(ValueError, match=message):
        ZtunnelConfig(**values)  # type: ignore[arg-type]


def test_in_cluster() -> None:
    config = ZtunnelConfig(node="n", cluster_cidrs=("10.244.0.0/16", "10.96.0.0/16", "fd00::/48"))
    assert config.in_cluster("10.244.3.4")
    assert config.in_cluster("10.96.0.10")
    assert config.in_cluster("::ffff:10.96.0.10")
    assert config.in_cluster("fd00::5")
    assert not config.in_cluster("10.245.0.1")
    assert not config.in_cluster("127.0.0.1")
    assert not config.in_cluster("2001:db8::1")
    assert config.in_cluster("not-an-ip")  # cannot tell: fail closed
