"""Istio DestinationRule → the waypoint's TrafficPolicy: fields, defaults, hosts, duplicates, warnings."""

from __future__ import annotations

from typing import Any

import pytest
from translate_builders import JSON, run, service

from ambit.control.app import WATCHED_KINDS
from ambit.control.translate_destination_rule import convert_destination_rules, resolve_host
from ambit.model.traffic_policy import ConnectionPool, OutlierDetection, TrafficPolicy
from ambit.model.version import content_version
from ambit.resources import ManifestError, validate

WEB = "default/web.default.svc.cluster.local"
API = "default/api.default.svc.cluster.local"
T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-02T00:00:00Z"


def dr(
    spec: JSON | None = None,
    name: str = "r",
    ns: str = "default",
    *,
    host: str = "web",
    created: str | None = T0,
    version: str = "v1",
) -> JSON:
    meta: JSON = {"name": name, "namespace": ns}
    if created is not None:
        meta["creationTimestamp"] = created
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "DestinationRule",
        "metadata": meta,
        "spec": {"host": host, **(spec or {})},
    }


def policy(**traffic: Any) -> JSON:
    return {"trafficPolicy": traffic}


def translated(*objects: JSON, **kwargs: Any) -> tuple[dict[str, TrafficPolicy], tuple[str, ...]]:
    result = run(service("web"), service("api", cluster_ip="10.96.0.20"), *objects, **kwargs)
    return dict(result.traffic_policies), result.warnings


def only(*objects: JSON) -> TrafficPolicy:
    """The one traffic policy, and no warnings."""
    values, warnings = translated(*objects)
    assert warnings == ()
    (value,) = values.values()
    return value


# --- fields and defaults ------------------------------------------------------------------------


def test_connection_pool_and_outlier_detection_fields() -> None:
    value = only(
        dr(
            policy(
                connectionPool={
                    "tcp": {"maxConnections": 100},
                    "http": {
                        "http1MaxPendingRequests": 10,
                        "maxRequestsPerConnection": 1,
                        "http2MaxRequests": 1000,
                    },
                },
                outlierDetection={
                    "consecutive5xxErrors": 7,
                    "consecutiveGatewayErrors": 3,
                    "interval": "5m",
                    "baseEjectionTime": "15m",
                    "maxEjectionPercent": 100,
                    "minHealthPercent": 50,
                },
            )
        )
    )
    assert value == TrafficPolicy(
        "r",
        "default",
        WEB,
        ConnectionPool(
            max_connections=100, max_pending_requests=10, max_requests_per_connection=1, max_requests=1000
        ),
        OutlierDetection(
            consecutive_5xx=7,
            consecutive_gateway_errors=3,
            interval=300.0,
            base_ejection_time=900.0,
            max_ejection_percent=100,
            min_health_percent=50,
        ),
    )
    assert value.key == "default/r"


def test_istio_defaults_for_an_empty_outlier_detection() -> None:
    """``outlierDetection: {}`` still turns detection on, with Istio's (Envoy's) defaults."""
    value = only(dr(policy(outlierDetection={})))
    assert value.connection_pool is None
    assert value.outlier_detection == OutlierDetection(
        consecutive_5xx=5,
        consecutive_gateway_errors=None,
        interval=10.0,
        base_ejection_time=30.0,
        max_ejection_percent=10,
        min_health_percent=0,
    )


@pytest.mark.parametrize(
    ("outlier", "expected"),
    [
        ({"consecutive5xxErrors": 0}, {"consecutive_5xx": None}),  # 0 turns the 5xx detector off
        ({"consecutiveGatewayErrors": 0}, {}),  # 0 (or unset): gateway detector off
        ({"maxEjectionPercent": 0}, {}),  # Istio passes only a value above 0: Envoy's 10 stays
        ({"minHealthPercent": 0}, {}),
        ({"interval": "500ms", "baseEjectionTime": "1.5s"}, {"interval": 0.5, "base_ejection_time": 1.5}),
        ({"interval": "1h30m"}, {"interval": 5400.0}),
    ],
)
def test_zero_means_default_or_off_as_in_istio(outlier: JSON, expected: dict[str, Any]) -> None:
    value = only(dr(policy(outlierDetection=outlier)))
    assert value.outlier_detection == OutlierDetection(**expected)


def test_zero_limits_are_unlimited_and_no_limit_is_no_pool() -> None:
    value = only(
        dr(
            policy(
                connectionPool={"tcp": {"maxConnections": 0}, "http": {"http2MaxRequests": 0}},
                outlierDetection={},
            )
        )
    )
    assert value.connection_pool is None
    partial = only(dr(policy(connectionPool={"http": {"http1MaxPendingRequests": 1}})))
    assert partial.connection_pool == ConnectionPool(max_pending_requests=1)
    assert partial.outlier_detection is None


def test_a_rule_with_nothing_to_apply_gives_no_value() -> None:
    assert translated(dr())[0] == {}  # no trafficPolicy
    assert translated(dr(policy()))[0] == {}  # an empty one


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_served_version(version: str) -> None:
    assert only(dr(policy(outlierDetection={}), version=version)).service_key == WEB


# --- hosts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["web", "web.default.svc.cluster.local"])
def test_short_name_and_fqdn_resolve_silently(host: str) -> None:
    assert only(dr(policy(outlierDetection={}), host=host)).service_key == WEB


@pytest.mark.parametrize("host", ["web.default", "web.default.svc"])
def test_partial_names_resolve_with_a_portability_warning(host: str) -> None:
    values, warnings = translated(dr(policy(outlierDetection={}), host=host))
    assert [v.service_key for v in values.values()] == [WEB]
    assert warnings == (
        f"DestinationRule default/r: host {host!r} is read as Service default/web, but Istio takes a host "
        "with a dot as fully qualified and would match no Service: write 'web' or "
        "'web.default.svc.cluster.local'",
    )


def test_cluster_domain_is_honoured() -> None:
    objects = (dr(policy(outlierDetection={}), host="web.default.svc.example.org"),)
    values, warnings = translated(*objects, cluster_domain="example.org")
    assert warnings == ()
    assert [v.service_key for v in values.values()] == ["default/web.default.svc.example.org"]


@pytest.mark.parametrize(
    ("host", "warning"),
    [
        ("nope", "host 'nope': no such Service; the rule is ignored"),
        (
            "web.other.svc.cluster.local",
            "host 'web.other.svc.cluster.local' is a Service in another namespace; DestinationRules for "
            "another namespace's Service are not supported yet; the rule is ignored",
        ),
        ("web.other", "host 'web.other' is not a Service of the cluster"),
        ("*.default.svc.cluster.local", "wildcard host '*.default.svc.cluster.local' is not supported yet"),
        ("example.com", "host 'example.com' is not a Service of the cluster (ServiceEntry hosts"),
        ("10.96.0.10", "host '10.96.0.10' is not a Service of the cluster"),
        ("web.default.svc.other.domain", "host 'web.default.svc.other.domain' is not a Service of the"),
    ],
)
def test_hosts_that_name_no_service_here_are_skipped(host: str, warning: str) -> None:
    values, warnings = translated(dr(policy(outlierDetection={}), host=host))
    assert values == {}
    assert len(warnings) == 1 and warnings[0].startswith(f"DestinationRule default/r: {warning}")


def test_a_service_of_another_namespace_is_not_supported_yet() -> None:
    for host in ("web.other", "web.other.svc", "web.other.svc.cluster.local"):
        values, warnings = translated(service("web", "other"), dr(policy(outlierDetection={}), host=host))
        assert values == {}
        assert warnings == (
            f"DestinationRule default/r: host {host!r} is a Service in another namespace; DestinationRules "
            "for another namespace's Service are not supported yet; the rule is ignored",
        )


def test_resolve_host() -> None:
    assert resolve_host("web", "ns", "cluster.local") == ("ns", "web")
    assert resolve_host("web.a", "ns", "cluster.local") == ("a", "web")
    assert resolve_host("web.a.svc", "ns", "cluster.local") == ("a", "web")
    assert resolve_host("web.a.svc.cluster.local", "ns", "cluster.local") == ("a", "web")
    # the same rule as VirtualService hosts (resources/objects.py::service_for_host): the full name may
    # be written absolute, a short one may not
    assert resolve_host("web.a.svc.cluster.local.", "ns", "cluster.local") == ("a", "web")
    for host in ("", "*", "web.a.svc.cluster", "web.a.b", ".a", "web.", "web.a."):
        assert resolve_host(host, "ns", "cluster.local") is None, host


def test_workload_selector_rules_are_skipped() -> None:
    values, warnings = translated(
        dr({**policy(outlierDetection={}), "workloadSelector": {"matchLabels": {"a": "b"}}})
    )
    assert values == {}
    assert warnings == (
        "DestinationRule default/r: workloadSelector is not supported yet (such a rule applies only to the "
        "workloads it selects); the rule is ignored",
    )


def test_rules_per_service_are_independent() -> None:
    values, warnings = translated(
        dr(policy(outlierDetection={}), name="a"), dr(policy(outlierDetection={}), name="b", host="api")
    )
    assert warnings == ()
    assert {key: v.service_key for key, v in values.items()} == {"default/a": WEB, "default/b": API}


# --- duplicates ---------------------------------------------------------------------------------


def test_the_oldest_rule_with_a_traffic_policy_wins_whole() -> None:
    old = dr(policy(outlierDetection={"consecutive5xxErrors": 1}), name="z-old", created=T0)
    new = dr(policy(connectionPool={"tcp": {"maxConnections": 5}}), name="a-new", created=T1)
    values, warnings = translated(new, old)
    assert list(values) == ["default/z-old"]
    assert values["default/z-old"].connection_pool is None, "not merged field by field"
    assert warnings == (
        "DestinationRule default/a-new: DestinationRule default/z-old is older and also sets a trafficPolicy "
        f"for Service {WEB}; the oldest rule's trafficPolicy wins whole (as in Istio), this one's is ignored",
    )


def test_same_creation_time_falls_back_to_the_name() -> None:
    a = dr(policy(outlierDetection={"consecutive5xxErrors": 1}), name="a")
    b = dr(policy(outlierDetection={"consecutive5xxErrors": 2}), name="b")
    values, warnings = translated(b, a)
    assert list(values) == ["default/a"]
    assert len(warnings) == 1 and warnings[0].startswith(
        "DestinationRule default/b: DestinationRule default/a"
    )


def test_an_older_rule_without_a_traffic_policy_does_not_hide_a_newer_one() -> None:
    subsets_only = dr({"subsets": [{"name": "v1", "labels": {"version": "v1"}}]}, name="old", created=T0)
    newer = dr(policy(outlierDetection={}), name="new", created=T1)
    values, warnings = translated(subsets_only, newer)
    assert list(values) == ["default/new"]
    assert warnings == ("DestinationRule default/old: subsets is not supported yet; it is ignored",)


def test_a_rule_without_a_timestamp_counts_as_the_oldest() -> None:
    undated = dr(policy(outlierDetection={}), name="z", created=None)
    dated = dr(policy(outlierDetection={}), name="a", created=T0)
    assert list(translated(dated, undated)[0]) == ["default/z"]


# --- what is not supported ----------------------------------------------------------------------


def test_unsupported_fields_warn_and_the_rest_is_kept() -> None:
    spec = {
        "exportTo": ["."],
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
        "trafficPolicy": {
            "loadBalancer": {"simple": "ROUND_ROBIN"},
            "tls": {"mode": "ISTIO_MUTUAL"},
            "portLevelSettings": [{"port": {"number": 80}, "outlierDetection": {}}],
            "connectionPool": {
                "tcp": {"maxConnections": 3, "connectTimeout": "1s"},
                "http": {"maxRetries": 2, "idleTimeout": "10s"},
            },
            "outlierDetection": {
                "consecutiveErrors": 3,
                "splitExternalLocalOriginErrors": True,
                "consecutiveLocalOriginFailures": 2,
                "outlierDetectionHttpErrorCodes": [500],
            },
        },
    }
    values, warnings = translated(dr(spec))
    assert values["default/r"].connection_pool == ConnectionPool(max_connections=3)
    assert values["default/r"].outlier_detection == OutlierDetection()
    what = "DestinationRule default/r"
    assert set(warnings) == {
        f"{what}: exportTo is ignored: the rule applies at its Service's waypoint for every client",
        f"{what}: subsets is not supported yet; it is ignored",
        f"{what}: trafficPolicy.loadBalancer is not supported yet; it is ignored",
        f"{what}: trafficPolicy.tls is not supported yet; it is ignored",
        f"{what}: trafficPolicy.portLevelSettings is not supported yet; it is ignored",
        f"{what}: trafficPolicy.connectionPool.tcp.connectTimeout is not supported yet; it is ignored",
        f"{what}: trafficPolicy.connectionPool.http.maxRetries is not supported yet; it is ignored",
        f"{what}: trafficPolicy.connectionPool.http.idleTimeout is not supported yet; it is ignored",
        f"{what}: trafficPolicy.outlierDetection.splitExternalLocalOriginErrors is not supported yet; it is "
        "ignored",
        f"{what}: trafficPolicy.outlierDetection.consecutiveLocalOriginFailures is not supported yet; it is "
        "ignored",
        f"{what}: trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes is not supported yet; it is "
        "ignored",
        f"{what}: trafficPolicy.outlierDetection.consecutiveErrors is deprecated and ignored (as by Istio); "
        "use consecutive5xxErrors or consecutiveGatewayErrors",
    }


def test_values_the_store_would_refuse_are_defended_against() -> None:
    """Translation is a pure function of dicts: junk that skipped validation warns and falls back."""
    raw = dr(
        policy(
            connectionPool={"tcp": {"maxConnections": -1}, "http": {"http2MaxRequests": "10"}},
            outlierDetection={
                "consecutive5xxErrors": True,
                "interval": "10",
                "baseEjectionTime": "0.5ms",
                "maxEjectionPercent": 101,
            },
        )
    )
    warnings: list[str] = []
    services = {svc.key: svc for svc in run(service("web")).services.values()}
    values = convert_destination_rules([raw], services, cluster_domain="cluster.local", warnings=warnings)
    assert values["default/r"].connection_pool is None
    assert values["default/r"].outlier_detection == OutlierDetection()
    assert len(warnings) == 6, warnings
    assert any("maxConnections -1 is not a non-negative count" in w for w in warnings)
    assert any(
        "interval '10' is not a duration of at least 1ms; the default 10s is used" in w for w in warnings
    )
    assert any("maxEjectionPercent 101 is not a percentage in 0..100; 10 is used" in w for w in warnings)


def test_other_groups_and_kinds_are_passed_over() -> None:
    wrong_group = dr(policy(outlierDetection={}))
    wrong_group["apiVersion"] = "example.com/v1"
    warnings: list[str] = []
    services = {svc.key: svc for svc in run(service("web")).services.values()}
    other_kind = {**dr(policy(outlierDetection={})), "kind": "VirtualService"}
    assert (
        convert_destination_rules(
            [wrong_group, other_kind], services, cluster_domain="cluster.local", warnings=warnings
        )
        == {}
    )
    assert warnings == [
        "DestinationRule default/r: apiVersion 'example.com/v1' is not networking.istio.io; ignored"
    ]


# --- the store's schema, the control plane's wiring ---------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("outlierDetection", "interval"), "10", "is not a duration"),
        (("outlierDetection", "interval"), "0.5ms", "must be at least 1ms"),
        (("outlierDetection", "baseEjectionTime"), "1.5ms", "only durations to ms precision"),
        (("outlierDetection", "maxEjectionPercent"), 101, "between 0 and 100"),
        (("outlierDetection", "minHealthPercent"), -1, "between 0 and 100"),
        (("outlierDetection", "consecutive5xxErrors"), -1, "between 0 and 4294967295"),
        (("outlierDetection", "consecutive5xxErrors"), "5", "expected an integer"),
        (("connectionPool", "tcp", "maxConnections"), -1, "between 0 and 2147483647"),
        (("connectionPool", "http", "http2MaxRequests"), 2**31, "between 0 and 2147483647"),
    ],
)
def test_the_schema_refuses_what_istio_refuses(path: tuple[str, ...], value: object, message: str) -> None:
    traffic: JSON = {}
    node = traffic
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(ManifestError, match=message):
        validate(dr(policy(**traffic)), "test.yaml")


def test_the_schema_keeps_an_istio_sample() -> None:
    """istio.io's circuit-breaking task's DestinationRule, unchanged."""
    sample = dr(
        policy(
            connectionPool={
                "tcp": {"maxConnections": 1},
                "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1},
            },
            outlierDetection={
                "consecutive5xxErrors": 1,
                "interval": "1s",
                "baseEjectionTime": "3m",
                "maxEjectionPercent": 100,
            },
        ),
        host="httpbin",
    )
    assert validate(sample, "test.yaml") == sample
    with pytest.raises(ManifestError, match="required field is missing"):
        validate({**sample, "spec": {"trafficPolicy": {}}}, "test.yaml")


def test_the_control_plane_watches_and_versions_them() -> None:
    assert "DestinationRule" in WATCHED_KINDS
    result = run(service("web"), dr(policy(outlierDetection={})))
    value = result.traffic_policies["default/r"]
    assert result.versions["tp/default/r"] == content_version(value)
