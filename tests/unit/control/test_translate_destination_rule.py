"""Istio DestinationRule → the waypoint's TrafficPolicy: fields, defaults, hosts, duplicates, warnings."""

from __future__ import annotations

from typing import Any

import pytest
from translate_builders import JSON, pod, run, service

from ambit.control.app import WATCHED_KINDS
from ambit.control.translate_destination_rule import convert_destination_rules, resolve_host
from ambit.model.traffic_policy import ConnectionPool, OutlierDetection, Subset, TrafficPolicy
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
    """Merged into the oldest (its name), the newer rule's trafficPolicy used: mergeDestinationRule."""
    subsets_only = dr({"subsets": [{"name": "v1", "labels": {"version": "v1"}}]}, name="old", created=T0)
    newer = dr(policy(outlierDetection={}), name="new", created=T1)
    values, warnings = translated(subsets_only, newer)
    assert warnings == ()
    assert list(values) == ["default/old"]
    assert values["default/old"].outlier_detection == OutlierDetection()
    assert values["default/old"].subsets == (Subset("v1"),)


def test_a_rule_without_a_timestamp_counts_as_the_oldest() -> None:
    undated = dr(policy(outlierDetection={}), name="z", created=None)
    dated = dr(policy(outlierDetection={}), name="a", created=T0)
    assert list(translated(dated, undated)[0]) == ["default/z"]


# --- subsets ------------------------------------------------------------------------------------

REVIEWS = "default/reviews.default.svc.cluster.local"


def reviews_cluster(*extra: JSON) -> list[JSON]:
    """bookinfo's reviews v1/v2/v3, plus a pod of another Service with the same version label, a
    Succeeded reviews pod and one without an IP (neither is a workload, so neither is an endpoint)."""
    return [
        service("reviews", selector={"app": "reviews"}, cluster_ip="10.96.0.30"),
        service("ratings", selector={"app": "ratings"}, cluster_ip="10.96.0.31"),
        pod("reviews-v1", labels={"app": "reviews", "version": "v1"}, ip="10.244.1.11"),
        pod("reviews-v1b", labels={"app": "reviews", "version": "v1"}, ip="10.244.1.12"),
        pod("reviews-v2", labels={"app": "reviews", "version": "v2"}, ip="10.244.1.13"),
        pod("reviews-v3", labels={"app": "reviews", "version": "v3", "tier": "x"}, ip="10.244.1.14"),
        pod("ratings-v1", labels={"app": "ratings", "version": "v1"}, ip="10.244.1.15"),
        pod("reviews-done", labels={"app": "reviews", "version": "v1"}, ip="10.244.1.16", phase="Succeeded"),
        pod("reviews-new", labels={"app": "reviews", "version": "v1"}, ip=None),
        *extra,
    ]


def subsets_of(*objects: JSON) -> tuple[dict[str, TrafficPolicy], tuple[str, ...]]:
    result = run(*reviews_cluster(*objects))
    return dict(result.traffic_policies), result.warnings


def uids(*pods: str) -> tuple[str, ...]:
    return tuple(sorted(f"uid-default-{name}" for name in pods))


def test_subsets_hold_the_services_workloads_whose_labels_match() -> None:
    rule = dr(
        {
            "subsets": [
                {"name": "v3", "labels": {"version": "v3"}},
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2", "app": "reviews"}},
                {"name": "v9", "labels": {"version": "v9"}},
            ]
        },
        name="reviews",
        host="reviews",
    )
    values, warnings = subsets_of(rule)
    assert warnings == ()
    assert values == {
        "default/reviews": TrafficPolicy(
            "reviews",
            "default",
            REVIEWS,
            subsets=(
                Subset("v1", uids("reviews-v1", "reviews-v1b")),  # not ratings-v1, nor the non-workloads
                Subset("v2", uids("reviews-v2")),
                Subset("v3", uids("reviews-v3")),
                Subset("v9"),  # defined, no endpoint: the waypoint answers 503 UH, not NC
            ),
        )
    }


def test_a_subset_without_labels_holds_every_endpoint_of_the_service() -> None:
    rule = dr({"subsets": [{"name": "all"}, {"name": "none-set", "labels": {}}]}, host="reviews")
    values, warnings = subsets_of(rule)
    assert warnings == ()
    every = uids("reviews-v1", "reviews-v1b", "reviews-v2", "reviews-v3")
    assert values["default/r"].subsets == (Subset("all", every), Subset("none-set", every))


def test_a_pod_without_its_uid_counts_under_the_workload_uid() -> None:
    anonymous = pod("reviews-anon", labels={"app": "reviews", "version": "v2"}, ip="10.244.1.20")
    del anonymous["metadata"]["uid"]
    rule = dr({"subsets": [{"name": "v2", "labels": {"version": "v2"}}]}, host="reviews")
    values, _ = subsets_of(rule, anonymous)
    (subset,) = values["default/r"].subsets
    assert subset.workloads == ("default/reviews-anon", "uid-default-reviews-v2")


def test_subsets_of_several_rules_are_merged_oldest_first_and_a_repeated_name_is_ignored() -> None:
    old = dr(
        {
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v1", "labels": {"version": "v2"}},
            ]
        },
        name="z-old",
        host="reviews",
        created=T0,
    )
    new = dr(
        {
            "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 7}}},
            "subsets": [
                {"name": "v2", "labels": {"version": "v2"}},
                {"name": "v1", "labels": {"version": "v3"}},
            ],
        },
        name="a-new",
        host="reviews",
        created=T1,
    )
    values, warnings = subsets_of(new, old)
    assert list(values) == ["default/z-old"], "one value per Service, named after the oldest rule"
    value = values["default/z-old"]
    assert value.connection_pool == ConnectionPool(max_connections=7)
    assert value.subsets == (
        Subset("v1", uids("reviews-v1", "reviews-v1b")),
        Subset("v2", uids("reviews-v2")),
    )
    assert set(warnings) == {
        "DestinationRule default/z-old: subsets[1] (v1): subset 'v1' is already defined by this rule; this "
        "one is ignored (as in Istio, the oldest definition wins)",
        "DestinationRule default/a-new: subsets[1] (v1): subset 'v1' is already defined by DestinationRule "
        "default/z-old; this one is ignored (as in Istio, the oldest definition wins)",
    }


def test_a_rule_with_only_subsets_gives_a_value() -> None:
    values, warnings = subsets_of(
        dr({"subsets": [{"name": "v2", "labels": {"version": "v2"}}]}, host="reviews")
    )
    assert warnings == ()
    assert values == {
        "default/r": TrafficPolicy("r", "default", REVIEWS, subsets=(Subset("v2", uids("reviews-v2")),))
    }
    assert subsets_of(dr({"subsets": []}, host="reviews"))[0] == {}, "no subset, no policy: no value"


def test_subsets_follow_their_services_endpoints_only() -> None:
    """Rules of two Services: each subset is resolved against its own Service's endpoints."""
    values, warnings = subsets_of(
        dr({"subsets": [{"name": "v1", "labels": {"version": "v1"}}]}, name="a", host="reviews"),
        dr({"subsets": [{"name": "v1", "labels": {"version": "v1"}}]}, name="b", host="ratings"),
    )
    assert warnings == ()
    assert values["default/a"].subsets == (Subset("v1", uids("reviews-v1", "reviews-v1b")),)
    assert values["default/b"].subsets == (Subset("v1", uids("ratings-v1")),)


def test_subsets_the_store_would_refuse_are_skipped_with_a_warning() -> None:
    raw = dr(
        {
            "subsets": [
                {"name": "V1", "labels": {"version": "v1"}},
                {"labels": {"version": "v1"}},
                "v1",
                {"name": "v2", "labels": {"version": 2}},
                {"name": "v3", "labels": {"version": "v3"}},
            ]
        },
        host="reviews",
    )
    warnings: list[str] = []
    result = run(*reviews_cluster())
    endpoints = {REVIEWS: [("uid-3", {"version": "v3"}), ("uid-1", {"version": "v1"})]}
    values = convert_destination_rules(
        [raw], result.services, cluster_domain="cluster.local", warnings=warnings, endpoints=endpoints
    )
    assert values["default/r"].subsets == (Subset("v3", ("uid-3",)),)
    what = "DestinationRule default/r: subsets"
    assert warnings == [
        f"{what}[0]: name 'V1' is not a DNS-1123 label; that subset is ignored",
        f"{what}[1]: name None is not a DNS-1123 label; that subset is ignored",
        f"{what}[2]: name None is not a DNS-1123 label; that subset is ignored",
        f"{what}[3] (v2): labels is not a map of strings; that subset is ignored",
    ]


@pytest.mark.parametrize(
    ("subset", "message"),
    [
        ({"name": "V1"}, "is not a valid DNS-1123 label"),
        ({"labels": {"version": "v1"}}, "required field is missing"),
        ({"name": "v1", "labels": {"version": 1}}, "expected a string, got 1"),
        ({"name": "v1", "labels": {"bad key!": "v1"}}, "name part must consist of alphanumeric"),
        (
            {"name": "v1", "trafficPolicy": {"outlierDetection": {"maxEjectionPercent": 101}}},
            "between 0 and 100",
        ),
    ],
)
def test_the_schema_refuses_bad_subsets(subset: JSON, message: str) -> None:
    with pytest.raises(ManifestError, match=message) as caught:
        validate(dr({"subsets": [{"name": "ok"}, subset]}), "test.yaml")
    assert "DestinationRule/default/r: spec.subsets[1]" in str(caught.value)


def test_the_schema_keeps_bookinfo_subsets() -> None:
    """istio.io's bookinfo destination-rule-all.yaml entry for reviews, unchanged."""
    sample = dr(
        {
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
                {"name": "v3", "labels": {"version": "v3"}},
            ]
        },
        name="reviews",
        host="reviews",
    )
    assert validate(sample, "test.yaml") == sample


# --- what is not supported ----------------------------------------------------------------------


def test_unsupported_fields_warn_and_the_rest_is_kept() -> None:
    spec = {
        "exportTo": ["."],
        "subsets": [{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"outlierDetection": {}}}],
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
        f"{what}: subsets[0] (v1): trafficPolicy is not supported yet; it is ignored (the subset takes "
        "the Service's connection pool and outlier detection)",
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
