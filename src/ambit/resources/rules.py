"""Rules across fields that the per-field schemas cannot express (Kubernetes, Gateway API and Istio).

Run only on objects that already passed their schema, so every value has its declared type. Each
check returns ``(path, message)`` pairs, ``path`` a tuple of keys and indexes as in pydantic's
``loc``. Pure: stdlib only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ambit.resources import checks
from ambit.resources.objects import selector_matches

Path = tuple[str | int, ...]
Problem = tuple[Path, str]
JSON = dict[str, Any]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _map(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def label_selector(sel: JSON, path: Path) -> Iterator[Problem]:
    for i, req in enumerate(_list(sel.get("matchExpressions"))):
        values = _list(req.get("values"))
        if req.get("operator") in ("In", "NotIn") and not values:
            yield (*path, "matchExpressions", i, "values"), "must be specified when operator is In or NotIn"
        if req.get("operator") in ("Exists", "DoesNotExist") and values:
            yield (
                (*path, "matchExpressions", i, "values"),
                "may not be specified when operator is Exists or DoesNotExist",
            )


def _probe(probe: JSON, path: Path) -> Iterator[Problem]:
    handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if probe.get(h) is not None]
    if len(handlers) != 1:
        yield path, "must specify exactly one of httpGet, tcpSocket, exec or grpc"


def pod_spec(spec: JSON, path: Path) -> Iterator[Problem]:
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, ctr in enumerate(_list(spec.get(group))):
            name = ctr.get("name")
            if name in seen:
                yield (*path, group, i, "name"), f"duplicate container name {name!r}"
            seen.add(name)
            port_names: set[str] = set()
            for j, port in enumerate(_list(ctr.get("ports"))):
                pname = port.get("name")
                if pname is not None:
                    if pname in port_names:
                        yield (*path, group, i, "ports", j, "name"), f"duplicate port name {pname!r}"
                    port_names.add(pname)
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if isinstance(ctr.get(probe), dict):
                    yield from _probe(ctr[probe], (*path, group, i, probe))
    for i, tsc in enumerate(_list(spec.get("topologySpreadConstraints"))):
        if isinstance(tsc.get("labelSelector"), dict):
            yield from label_selector(
                tsc["labelSelector"], (*path, "topologySpreadConstraints", i, "labelSelector")
            )
    names: set[str] = set()
    for i, vol in enumerate(_list(spec.get("volumes"))):
        if vol.get("name") in names:
            yield (*path, "volumes", i, "name"), f"duplicate volume name {vol.get('name')!r}"
        names.add(vol.get("name"))


def pod(obj: JSON) -> Iterator[Problem]:
    yield from pod_spec(_map(obj.get("spec")), ("spec",))


def deployment(obj: JSON) -> Iterator[Problem]:
    spec = _map(obj.get("spec"))
    selector = _map(spec.get("selector"))
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        yield ("spec", "selector"), "empty selector is invalid for a Deployment"
    else:
        yield from label_selector(selector, ("spec", "selector"))
        labels = _map(_map(_map(spec.get("template")).get("metadata")).get("labels"))
        if not selector_matches(selector, labels):
            yield ("spec", "template", "metadata", "labels"), "`selector` does not match template `labels`"
    template_spec = _map(_map(spec.get("template")).get("spec"))
    restart = template_spec.get("restartPolicy")
    if restart not in (None, "Always"):
        yield ("spec", "template", "spec", "restartPolicy"), f"only 'Always' is supported, got {restart!r}"
    yield from pod_spec(template_spec, ("spec", "template", "spec"))
    yield from deployment_strategy(_map(spec.get("strategy")))


def deployment_strategy(strategy: JSON) -> Iterator[Problem]:
    """Kubernetes' rules: ``rollingUpdate`` only with type RollingUpdate; surge and unavailable not both 0."""
    rolling = strategy.get("rollingUpdate")
    if strategy.get("type") == "Recreate" and rolling is not None:
        yield ("spec", "strategy", "rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"
    if isinstance(rolling, dict):
        surge, unavailable = rolling.get("maxSurge"), rolling.get("maxUnavailable")
        if surge in (0, "0%") and unavailable in (0, "0%"):
            yield (
                ("spec", "strategy", "rollingUpdate", "maxUnavailable"),
                ("may not be 0 when `maxSurge` is 0"),
            )
        if isinstance(unavailable, str) and unavailable.endswith("%") and int(unavailable[:-1] or 0) > 100:
            yield ("spec", "strategy", "rollingUpdate", "maxUnavailable"), "should not be more than 100%"


def replica_set(obj: JSON) -> Iterator[Problem]:
    spec = _map(obj.get("spec"))
    selector = _map(spec.get("selector"))
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        yield ("spec", "selector"), "empty selector is invalid for a ReplicaSet"
    else:
        yield from label_selector(selector, ("spec", "selector"))
        labels = _map(_map(_map(spec.get("template")).get("metadata")).get("labels"))
        if not selector_matches(selector, labels):
            yield ("spec", "template", "metadata", "labels"), "`selector` does not match template `labels`"
    yield from pod_spec(_map(_map(spec.get("template")).get("spec")), ("spec", "template", "spec"))


#: what the runtime's HPA can measure (Kubernetes' other metric sources need an adapter ambit has not)
HPA_METRIC_TYPES = ("Resource", "Pods")


def horizontal_pod_autoscaler(obj: JSON) -> Iterator[Problem]:
    spec = _map(obj.get("spec"))
    low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        yield ("spec", "maxReplicas"), f"must be greater than or equal to `minReplicas` ({low}), got {high}"
    for i, metric in enumerate(_list(spec.get("metrics"))):
        kind = metric.get("type")
        where = ("spec", "metrics", i)
        if kind not in HPA_METRIC_TYPES:
            yield (
                (*where, "type"),
                (f"{kind!r} metrics are not supported by ambit's runtime (supported: Resource, Pods)"),
            )
            continue
        field = "resource" if kind == "Resource" else "pods"
        source = metric.get(field)
        if not isinstance(source, dict):
            yield (*where, field), f"required for a metric of type {kind}"
            continue
        target = _map(source.get("target"))
        target_type = target.get("type")
        if kind == "Pods" and target_type != "AverageValue":
            yield (*where, field, "target", "type"), "a Pods metric's target must be AverageValue"
        if target_type == "Utilization" and target.get("averageUtilization") is None:
            yield (*where, field, "target", "averageUtilization"), "required for a Utilization target"
        if target_type == "AverageValue" and target.get("averageValue") is None:
            yield (*where, field, "target", "averageValue"), "required for an AverageValue target"
        if kind == "Resource" and target_type == "Value":
            yield (
                (*where, field, "target", "type"),
                ("a Resource metric's target must be Utilization or AverageValue"),
            )


def vertical_pod_autoscaler(obj: JSON) -> Iterator[Problem]:
    mode = _map(_map(obj.get("spec")).get("updatePolicy")).get("updateMode")
    if mode is None:
        yield (
            ("spec", "updatePolicy", "updateMode"),
            (
                "required by ambit: Kubernetes' default is Auto (pods are evicted to apply recommendations), "
                "which ambit does not run; set updateMode: Off for recommendations in status.recommendation"
            ),
        )
    elif mode != "Off":
        yield (
            ("spec", "updatePolicy", "updateMode"),
            (
                f"{mode!r} is not supported: ambit's VPA runs in recommendation mode only (updateMode: Off); "
                "it writes status.recommendation and never changes pods"
            ),
        )


def service(obj: JSON) -> Iterator[Problem]:
    spec = _map(obj.get("spec"))
    svc_type = spec.get("type") or "ClusterIP"
    ports = _list(spec.get("ports"))
    headless = spec.get("clusterIP") == "None"
    if svc_type == "ExternalName":
        if not spec.get("externalName"):
            yield ("spec", "externalName"), "required for a Service of type ExternalName"
    elif not ports and not headless:
        yield ("spec", "ports"), "a Service needs at least one port (unless it is headless)"
    if headless and svc_type != "ClusterIP":
        yield ("spec", "clusterIP"), f"'None' (headless) is only valid for type ClusterIP, not {svc_type}"
    names: set[str] = set()
    keys: set[tuple[int, str]] = set()
    for i, port in enumerate(ports):
        name = port.get("name")
        if len(ports) > 1 and not name:
            yield ("spec", "ports", i, "name"), "required when a Service has more than one port"
        elif name:
            if name in names:
                yield ("spec", "ports", i, "name"), f"duplicate port name {name!r}"
            names.add(name)
        key = (port.get("port"), port.get("protocol") or "TCP")
        if key in keys:
            yield ("spec", "ports", i), f"duplicate port {key[0]}/{key[1]}"
        keys.add(key)


def pod_disruption_budget(obj: JSON) -> Iterator[Problem]:
    spec = _map(obj.get("spec"))
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        yield ("spec",), "minAvailable and maxUnavailable cannot both be set"
    if isinstance(spec.get("selector"), dict):
        yield from label_selector(spec["selector"], ("spec", "selector"))


def gateway(obj: JSON) -> Iterator[Problem]:
    names: set[str] = set()
    for i, listener in enumerate(_list(_map(obj.get("spec")).get("listeners"))):
        if listener.get("name") in names:
            yield ("spec", "listeners", i, "name"), f"duplicate listener name {listener.get('name')!r}"
        names.add(listener.get("name"))
        namespaces = _map(_map(listener.get("allowedRoutes")).get("namespaces"))
        if namespaces.get("from") == "Selector" and not isinstance(namespaces.get("selector"), dict):
            yield (
                ("spec", "listeners", i, "allowedRoutes", "namespaces", "selector"),
                "required when from is Selector",
            )


_FILTER_FIELDS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
}


def _filters(filters: list[Any], path: Path) -> Iterator[Problem]:
    for i, flt in enumerate(filters):
        field = _FILTER_FIELDS.get(flt.get("type", ""))
        if field is not None and not isinstance(flt.get(field), dict):
            yield (*path, i, field), f"required when type is {flt.get('type')}"


def http_route(obj: JSON) -> Iterator[Problem]:
    for i, rule in enumerate(_list(_map(obj.get("spec")).get("rules"))):
        base: Path = ("spec", "rules", i)
        for j, match in enumerate(_list(rule.get("matches"))):
            path = _map(match.get("path"))
            value = path.get("value")
            if (
                path.get("type", "PathPrefix") in ("Exact", "PathPrefix")
                and isinstance(value, str)
                and not value.startswith("/")
            ):
                yield (*base, "matches", j, "path", "value"), "must be an absolute path (start with '/')"
        yield from _filters(_list(rule.get("filters")), (*base, "filters"))
        for j, ref in enumerate(_list(rule.get("backendRefs"))):
            yield from _filters(_list(ref.get("filters")), (*base, "backendRefs", j, "filters"))


def grpc_route(obj: JSON) -> Iterator[Problem]:
    for i, rule in enumerate(_list(_map(obj.get("spec")).get("rules"))):
        base: Path = ("spec", "rules", i)
        for j, match in enumerate(_list(rule.get("matches"))):
            method = _map(match.get("method"))
            if match.get("method") is not None and not method.get("service") and not method.get("method"):
                yield (*base, "matches", j, "method"), "one or both of service and method must be specified"
        yield from _filters(_list(rule.get("filters")), (*base, "filters"))


_SOURCE_FIELDS = (
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
)
_OPERATION_FIELDS = ("hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths")
_WHEN_VALUE_CHECKS: dict[str, Callable[[str], str | None]] = {
    "source.ip": checks.check_ip_or_cidr,
    "destination.ip": checks.check_ip_or_cidr,
    "remote.ip": checks.check_ip_or_cidr,
    "destination.port": checks.check_port_string,
}


def authorization_policy(obj: JSON) -> Iterator[Problem]:
    spec = _map(obj.get("spec"))
    has_selector = bool(_map(spec.get("selector")).get("matchLabels"))
    if spec.get("targetRef") is not None and spec.get("targetRefs"):
        yield ("spec", "targetRefs"), "only one of targetRef or targetRefs can be set"
    if has_selector and (spec.get("targetRef") is not None or spec.get("targetRefs")):
        yield ("spec", "selector"), "only one of selector or targetRef(s) can be set"
    action = spec.get("action") or "ALLOW"
    if action == "CUSTOM" and spec.get("provider") is None:
        yield ("spec", "provider"), "required when action is CUSTOM"
    if action != "CUSTOM" and spec.get("provider") is not None:
        yield ("spec", "provider"), f"only allowed when action is CUSTOM, not {action}"
    for i, rule in enumerate(_list(spec.get("rules"))):
        base: Path = ("spec", "rules", i)
        for j, entry in enumerate(_list(rule.get("from"))):
            source = _map(entry.get("source"))
            path: Path = (*base, "from", j, "source")
            if not any(source.get(f) for f in _SOURCE_FIELDS):
                yield path, "must not be empty"
            accounts = _list(source.get("serviceAccounts")) + _list(source.get("notServiceAccounts"))
            if accounts and any(
                source.get(f) for f in ("principals", "notPrincipals", "namespaces", "notNamespaces")
            ):
                yield path, "serviceAccounts cannot be used together with principals or namespaces"
            for field in ("serviceAccounts", "notServiceAccounts"):
                for k, value in enumerate(_list(source.get(field))):
                    if "*" in value:
                        yield (*path, field, k), "wildcards are not allowed in service accounts"
                    elif value.count("/") > 1:
                        yield (
                            (*path, field, k),
                            f"{value!r} is not a service account ('name' or 'namespace/name')",
                        )
        for j, entry in enumerate(_list(rule.get("to"))):
            if not any(_map(entry.get("operation")).get(f) for f in _OPERATION_FIELDS):
                yield (*base, "to", j, "operation"), "must not be empty"
        for j, cond in enumerate(_list(rule.get("when"))):
            path = (*base, "when", j)
            if not cond.get("values") and not cond.get("notValues"):
                yield path, f"at least one of values or notValues must be set for key {cond.get('key')!r}"
            check = _WHEN_VALUE_CHECKS.get(cond.get("key", ""))
            if check is not None:
                for field in ("values", "notValues"):
                    for k, value in enumerate(_list(cond.get(field))):
                        problem = check(value)
                        if problem is not None:
                            yield (*path, field, k), problem


def peer_authentication(obj: JSON) -> Iterator[Problem]:
    spec = _map(obj.get("spec"))
    port_level = _map(spec.get("portLevelMtls"))
    if port_level and not _map(spec.get("selector")).get("matchLabels"):
        yield ("spec", "portLevelMtls"), "portLevelMtls requires a workload selector"
    for key in port_level:
        problem = checks.check_port_string(key)
        if problem is not None:
            yield ("spec", "portLevelMtls", key), problem


_GATEWAY_GROUP = "gateway.networking.k8s.io"
_CORE_GROUPS = ("", "core")


def http_local_rate_limit_policy(obj: JSON) -> Iterator[Problem]:
    """At least one of total, identity and overrides; a targetRef's group fits its kind and its namespace
    is the policy's; no identity or override rate above the total's (Linkerd's admission rule)."""
    spec = _map(obj.get("spec"))
    namespace = _map(obj.get("metadata")).get("namespace") or "default"
    if spec.get("total") is None and spec.get("identity") is None and not spec.get("overrides"):
        yield ("spec",), "at least one of total, identity and overrides must be set"
    for i, ref in enumerate(_list(spec.get("targetRefs"))):
        kind, group = ref.get("kind"), ref.get("group") or ""
        if kind == "Service" and group not in _CORE_GROUPS:
            yield ("spec", "targetRefs", i, "group"), f"a Service is in the core group (''), not {group!r}"
        if kind == "Gateway" and group != _GATEWAY_GROUP:
            yield ("spec", "targetRefs", i, "group"), f"a Gateway is in group {_GATEWAY_GROUP}, not {group!r}"
        ref_namespace = ref.get("namespace")
        if ref_namespace and ref_namespace != namespace:
            yield (
                ("spec", "targetRefs", i, "namespace"),
                f"a policy can only target objects of its own namespace ({namespace!r}), "
                f"not {ref_namespace!r}",
            )
    total = _map(spec.get("total")).get("requestsPerSecond")
    if not isinstance(total, int):
        return
    identity = _map(spec.get("identity")).get("requestsPerSecond")
    if isinstance(identity, int) and identity > total:
        yield (
            ("spec", "identity", "requestsPerSecond"),
            f"must not be greater than total.requestsPerSecond ({total}), got {identity}",
        )
    for i, override in enumerate(_list(spec.get("overrides"))):
        rate = _map(override).get("requestsPerSecond")
        if isinstance(rate, int) and rate > total:
            yield (
                ("spec", "overrides", i, "requestsPerSecond"),
                f"must not be greater than total.requestsPerSecond ({total}), got {rate}",
            )


RULES: dict[str, Callable[[JSON], Iterator[Problem]]] = {
    "Pod": pod,
    "Deployment": deployment,
    "ReplicaSet": replica_set,
    "HorizontalPodAutoscaler": horizontal_pod_autoscaler,
    "VerticalPodAutoscaler": vertical_pod_autoscaler,
    "Service": service,
    "PodDisruptionBudget": pod_disruption_budget,
    "Gateway": gateway,
    "HTTPRoute": http_route,
    "GRPCRoute": grpc_route,
    "AuthorizationPolicy": authorization_policy,
    "PeerAuthentication": peer_authentication,
    "HTTPLocalRateLimitPolicy": http_local_rate_limit_policy,
}
