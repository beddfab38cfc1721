"""A GAMMA route's status: HTTPRoute, GRPCRoute and TCPRoute ``status.parents`` for Service parents (pure).

For every parentRef of a core ``Service`` (``is_service_parent``: the parents
``ambit.control.translate_routes`` translates) the route's status carries one ``parents[]`` entry,
as the Gateway API's ``RouteParentStatus`` (sigs.k8s.io/gateway-api ``apis/v1/shared_types.go``):

* ``parentRef``: ``group: ""``, ``kind: Service``, ``name``, ``namespace`` (the route's when the ref
  has none), and ``sectionName`` / ``port`` when the ref gives them. Equal parentRefs share one entry;
* ``controllerName: istio.io/gateway-controller``: what istiod writes (its ``ControllerName`` in
  ``pilot/pkg/config/kube/gateway/conversion.go``; ``createRouteStatus`` in ``conditions.go``
  writes ``features.ManagedGatewayController``, whose default it is), so tools that read Istio's
  route status read ours;
* ``conditions``, sorted by type as Istio's ``setConditions`` sorts them:

  - ``Accepted``: ``True``/``Accepted`` "Route was valid" (Istio's words) when the parentRef
    attaches (``translate_routes.resolve_parent``); else ``False`` with the reason that function
    gives: ``NoMatchingParent`` when the Service does not exist (as Istio: "parent service ... not
    found") or has no such ``sectionName`` / ``port`` (the spec's reason for a parentRef whose
    port or sectionName matches nothing), ``NotAllowedByListeners`` for a consumer route (a
    parentRef into another namespace: not supported yet; the spec's reason for a parent that does
    not allow the route); the message is the problem as the translation warning words it;
  - ``ResolvedRefs``: ``True``/``ResolvedRefs`` "All references resolved" (Istio's words) when
    every backendRef with a weight (weight 0 is never used, nor checked: as translation and
    Istio's ``buildHTTPDestination``) and every ``RequestMirror`` filter's backendRef (the spec:
    an invalid mirror backend sets ``ResolvedRefs`` false; Istio joins the mirror's error to the
    backends') resolves (``translate_routes.resolve_backend``) to a port of a Service in the
    route's namespace, or in another namespace whose ReferenceGrant permits it
    (``ambit.control.reference_grants``); else ``False`` with the first problem's reason, in rule
    order, the backendRefs of a rule before its mirrors: ``InvalidKind`` (not a core Service),
    ``RefNotPermitted`` (another namespace, and no ReferenceGrant there permits the route),
    ``BackendNotFound`` (no port, no such Service, or a port the Service does not have); the
    message lists every problem.

  Both carry the route's ``metadata.generation`` as ``observedGeneration``; ``lastTransitionTime``
  moves only when that condition's ``status`` or ``reason`` changes
  (``ambit.control.status_conditions``, ``ON_STATUS_OR_REASON``), so the status is a function of
  the route, the Services, the ReferenceGrants and the previous status: every control-plane replica
  computes the same one, and a writer that compares before writing never flaps it.

Entries other controllers wrote (another ``controllerName``, or a non-Service parent) are kept as
they are and where they are; ours keep their place, ours whose parentRef is gone are removed, new
ones are appended in ``parentRefs`` order (Istio's ``createRouteStatus`` does the same). A route with
no Service parent, and no entry of ours to remove, keeps the status it has. A route translation
ignores (not an HTTPRoute, GRPCRoute or TCPRoute of the Gateway API group) gets no entry.

One difference from the proxies: a backendRef to a port the Service does not have is reported
``BackendNotFound`` here, while translation still hands it to the waypoint (which then finds no
endpoint for it and answers 503).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ambit.control.reference_grants import NO_GRANTS, ReferenceGrants
from ambit.control.status_conditions import (
    ON_STATUS_OR_REASON,
    Verdict,
    find_condition,
    generation_of,
    stamped,
)
from ambit.control.translate_common import Index
from ambit.control.translate_routes import (
    BACKEND_NOT_FOUND,
    Refusal,
    backend_shown,
    backend_weight,
    is_gateway_route,
    is_service_parent,
    resolve_backend,
    resolve_parent,
)
from ambit.control.translate_services import service_info
from ambit.model.workload import Service
from ambit.resources.objects import items, mapping, name_of, namespace_of, text

JSON = dict[str, Any]

CONTROLLER_NAME = "istio.io/gateway-controller"
ACCEPTED = "Accepted"
RESOLVED_REFS = "ResolvedRefs"
ROUTE_VALID = "Route was valid"
REFS_RESOLVED = "All references resolved"
MAX_MESSAGE = 32768  # metav1.Condition's message limit

_ParentKey = tuple[str, str, str, int | None]  # namespace, name, sectionName, port


def services_from_objects(
    objects: Iterable[Any], *, cluster_domain: str = "cluster.local"
) -> dict[str, Service]:
    """The translated Services by key, as translation makes them (``translate_services.service_info``)."""
    empty = Index(by_key={})
    services: dict[str, Service] = {}
    for obj in objects:
        if text(obj, "kind") != "Service":
            continue
        try:
            service = service_info(obj, empty, {}, cluster_domain, []).service
        except Exception:  # one odd Service: translation leaves it out too
            continue
        services[service.key] = service
    return services


def parent_ref(ref: Mapping[str, Any], namespace: str) -> JSON:
    """A Service parentRef as the status names it."""
    out: JSON = {
        "group": "",
        "kind": "Service",
        "name": text(ref, "name"),
        "namespace": text(ref, "namespace") or namespace,
    }
    section = text(ref, "sectionName")
    if section:
        out["sectionName"] = section
    port = ref.get("port")
    if isinstance(port, int) and not isinstance(port, bool):
        out["port"] = port
    return out


def _key(ref: Mapping[str, Any], namespace: str) -> _ParentKey:
    named = parent_ref(ref, namespace)
    return (named["namespace"], named["name"], named.get("sectionName", ""), named.get("port"))


def _ours(entry: Any) -> bool:
    """An entry this controller owns: our controller name on a Service parent."""
    return (
        isinstance(entry, dict)
        and entry.get("controllerName") == CONTROLLER_NAME
        and is_service_parent(mapping(entry, "parentRef"))
    )


def _accepted(ref: JSON, namespace: str, services: Mapping[str, Service], cluster_domain: str) -> Verdict:
    resolved = resolve_parent(ref, namespace, services, cluster_domain)
    if isinstance(resolved, Refusal):
        return "False", resolved.reason, resolved.problem
    return "True", ACCEPTED, ROUTE_VALID


def _backend_refs(route: Any) -> list[tuple[str, JSON]]:
    """(where, ref) of every backend the route's status checks: the backendRefs with a weight and
    every RequestMirror's backendRef, in rule order."""
    refs: list[tuple[str, JSON]] = []
    for rule_at, rule in enumerate(items(mapping(route, "spec"), "rules")):
        refs += [
            (f"rule {rule_at} backendRef {ref_at}", ref)
            for ref_at, ref in enumerate(items(rule, "backendRefs"))
            if backend_weight(ref) > 0  # weight 0: never used, so not checked (as translation)
        ]
        refs += [
            (f"rule {rule_at} RequestMirror filter {at}", mapping(entry, "requestMirror", "backendRef"))
            for at, entry in enumerate(items(rule, "filters"))
            if text(entry, "type") == "RequestMirror"
        ]
    return refs


def backend_namespaces(route: Any) -> set[str]:
    """The namespaces whose Services (and ReferenceGrants) the route's status depends on: its own and
    those its backendRefs and mirrors name."""
    namespace = namespace_of(route)
    return {namespace} | {text(ref, "namespace") or namespace for _, ref in _backend_refs(route)}


def _resolved_refs(
    route: Any,
    namespace: str,
    services: Mapping[str, Service],
    cluster_domain: str,
    grants: ReferenceGrants,
) -> Verdict:
    problems: list[tuple[str, str]] = []
    kind = text(route, "kind")
    for where, ref in _backend_refs(route):
        shown = f"{where} ({backend_shown(ref, namespace)})"
        resolved = resolve_backend(ref, namespace, services, cluster_domain, route_kind=kind, grants=grants)
        if isinstance(resolved, Refusal):
            problems.append((resolved.reason, f"{shown}: {resolved.problem}"))
        elif all(p.port != resolved.port for p in services[resolved.service_key].ports):
            problems.append((BACKEND_NOT_FOUND, f"{shown}: the Service has no port {resolved.port}"))
    if not problems:
        return "True", RESOLVED_REFS, REFS_RESOLVED
    message = "; ".join(problem for _, problem in problems)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return "False", problems[0][0], message


def route_status(
    route: Any,
    services: Mapping[str, Service],
    previous: Mapping[str, Any] | None,
    *,
    now: str,
    cluster_domain: str = "cluster.local",
    grants: ReferenceGrants = NO_GRANTS,
) -> JSON:
    """The whole ``status`` the route should carry, given the Services by key (``Service.key``; those of
    every namespace in ``backend_namespaces``), the ReferenceGrants and the status it carries now;
    ``now`` (RFC 3339) is used only for a condition that transitioned."""
    previous = dict(previous) if isinstance(previous, Mapping) else {}
    namespace = namespace_of(route)
    generation = generation_of(route)
    before = items(previous, "parents")
    ours_before: dict[_ParentKey, JSON] = {}
    for entry in before:
        if _ours(entry):
            ours_before.setdefault(_key(mapping(entry, "parentRef"), namespace), entry)

    wanted: dict[_ParentKey, JSON] = {}
    refs: Verdict | None = None
    parents = items(mapping(route, "spec"), "parentRefs") if is_gateway_route(route) else []
    for ref in parents:
        if not is_service_parent(ref):
            continue
        key = _key(ref, namespace)
        if key in wanted:
            continue
        if refs is None:
            refs = _resolved_refs(route, namespace, services, cluster_domain, grants)
        old = items(ours_before.get(key), "conditions")
        verdicts = ((ACCEPTED, _accepted(ref, namespace, services, cluster_domain)), (RESOLVED_REFS, refs))
        wanted[key] = {
            "parentRef": parent_ref(ref, namespace),
            "controllerName": CONTROLLER_NAME,
            "conditions": [
                stamped(
                    kind,
                    verdict,
                    before=find_condition(old, kind),
                    generation=generation,
                    now=now,
                    moves_on=ON_STATUS_OR_REASON,
                )
                for kind, verdict in verdicts
            ],
        }
    if not wanted and not ours_before:
        return previous

    out: list[JSON] = []
    for entry in before:
        if not _ours(entry):
            out.append(entry)  # another controller's: left as it is, where it is
            continue
        replacement = wanted.pop(_key(mapping(entry, "parentRef"), namespace), None)
        if replacement is not None:
            out.append(replacement)  # ours: keeps its place; a duplicate or a removed parentRef goes
    out.extend(wanted.values())
    return {**previous, "parents": out}


def route_name(route: Any) -> str:
    """``<Kind> <namespace>/<name>``, for logs."""
    return f"{text(route, 'kind')} {namespace_of(route)}/{name_of(route)}"
