"""Pydantic v2 schemas of the kinds ambit models: the fields ambit uses, with Kubernetes' types and rules.

Every model is strict (an integer field takes only an integer, never ``"80"``; a string field only a
string) and allows extra fields (``extra="allow"``), so real manifests carrying fields ambit does not
use still validate, while a field ambit *does* model with a wrong type or value fails with its path.
Rules that involve several fields (unique port names, selector matches template, ...) live in
``ambit.resources.rules``; these models check types and single values only.

The models are used for validation only: the store keeps the (normalized) dicts, not these objects.

Over 500 lines because it is a table: one declarative model per Kubernetes, Gateway API and Istio type.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from ambit.resources import checks
from ambit.resources.durations import check_istio_duration


def _rule(check: Callable[[Any], str | None]) -> AfterValidator:
    def validate(value: Any) -> Any:
        problem = check(value)
        if problem is not None:
            raise PydanticCustomError("invalid", "{reason}", {"reason": problem})
        return value

    return AfterValidator(validate)


def _min(low: int) -> AfterValidator:
    return _rule(lambda v: None if v >= low else f"must be greater than or equal to {low}, got {v}")


def _range(low: int, high: int) -> AfterValidator:
    return _rule(
        lambda v: None if low <= v <= high else f"must be between {low} and {high}, inclusive, got {v}"
    )


DnsLabel = Annotated[str, _rule(checks.check_dns1123_label)]
DnsSubdomain = Annotated[str, _rule(checks.check_dns1123_subdomain)]
QualifiedName = Annotated[str, _rule(checks.check_qualified_name)]
LabelValue = Annotated[str, _rule(checks.check_label_value)]
IanaSvcName = Annotated[str, _rule(checks.check_iana_svc_name)]
PortNumber = Annotated[int, _rule(checks.check_port)]
PortOrName = Annotated[Any, _rule(checks.check_port_or_name)]
IntOrPercent = Annotated[Any, _rule(checks.check_int_or_percent)]
IPAddress = Annotated[str, _rule(checks.check_ip)]
IPOrCidr = Annotated[str, _rule(checks.check_ip_or_cidr)]
PortString = Annotated[str, _rule(checks.check_port_string)]
NonEmptyStr = Annotated[str, _rule(checks.check_non_empty)]
NonNegInt = Annotated[int, _min(0)]
PositiveInt = Annotated[int, _min(1)]
GatewayHostname = Annotated[str, _rule(checks.check_gateway_hostname)]
GatewayProtocol = Annotated[str, _rule(checks.check_gateway_protocol)]
GatewayDuration = Annotated[str, _rule(checks.check_gateway_duration)]
Labels = dict[QualifiedName, LabelValue]
Protocol = Literal["TCP", "UDP", "SCTP"]


class K8sModel(BaseModel):
    """Base of every schema: strict types, unknown fields kept."""

    model_config = ConfigDict(extra="allow", strict=True)


# --- metadata and selectors ------------------------------------------------------------------


class OwnerReference(K8sModel):
    apiVersion: NonEmptyStr
    kind: NonEmptyStr
    name: NonEmptyStr
    uid: str | None = None
    controller: bool | None = None
    blockOwnerDeletion: bool | None = None


class ObjectMeta(K8sModel):
    """``metadata``; ``name`` is checked against the kind's name rule separately."""

    name: str
    namespace: DnsLabel | None = None
    generateName: str | None = None
    labels: Labels | None = None
    annotations: dict[QualifiedName, str] | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    generation: int | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    deletionGracePeriodSeconds: NonNegInt | None = None
    ownerReferences: list[OwnerReference] | None = None
    finalizers: list[str] | None = None


class TemplateMeta(K8sModel):
    """``metadata`` of a pod template: no name needed."""

    name: str | None = None
    labels: Labels | None = None
    annotations: dict[QualifiedName, str] | None = None


class LabelSelectorRequirement(K8sModel):
    key: QualifiedName
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(K8sModel):
    matchLabels: Labels | None = None
    matchExpressions: list[LabelSelectorRequirement] | None = None


class WorkloadSelector(K8sModel):
    """Istio's selector: ``matchLabels`` only."""

    matchLabels: Labels | None = None


# --- core/v1 ---------------------------------------------------------------------------------


class NamespaceSpec(K8sModel):
    finalizers: list[str] | None = None


class Namespace(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: NamespaceSpec | None = None


class NodeAddress(K8sModel):
    type: NonEmptyStr
    address: NonEmptyStr


class NodeSpec(K8sModel):
    podCIDR: str | None = None
    podCIDRs: list[str] | None = None
    unschedulable: bool | None = None
    taints: list[dict[str, Any]] | None = None


class NodeStatus(K8sModel):
    addresses: list[NodeAddress] | None = None


class Node(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: NodeSpec | None = None
    status: NodeStatus | None = None


class ServiceAccount(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    automountServiceAccountToken: bool | None = None


class ContainerPort(K8sModel):
    containerPort: PortNumber
    name: IanaSvcName | None = None
    protocol: Protocol | None = None
    hostPort: PortNumber | None = None
    hostIP: str | None = None


class EnvVar(K8sModel):
    name: NonEmptyStr
    value: str | None = None
    valueFrom: dict[str, Any] | None = None


class HTTPHeader(K8sModel):
    name: str
    value: str


class HTTPGetAction(K8sModel):
    path: str | None = None
    port: PortOrName
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] | None = None
    httpHeaders: list[HTTPHeader] | None = None


class TCPSocketAction(K8sModel):
    port: PortOrName
    host: str | None = None


class ExecAction(K8sModel):
    command: list[str] | None = None


class GRPCAction(K8sModel):
    port: PortNumber
    service: str | None = None


class Probe(K8sModel):
    httpGet: HTTPGetAction | None = None
    tcpSocket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    grpc: GRPCAction | None = None
    initialDelaySeconds: NonNegInt | None = None
    periodSeconds: PositiveInt | None = None
    timeoutSeconds: PositiveInt | None = None
    successThreshold: PositiveInt | None = None
    failureThreshold: PositiveInt | None = None
    terminationGracePeriodSeconds: PositiveInt | None = None


class Container(K8sModel):
    name: DnsLabel
    image: NonEmptyStr
    command: list[str] | None = None
    args: list[str] | None = None
    workingDir: str | None = None
    ports: list[ContainerPort] | None = None
    env: list[EnvVar] | None = None
    readinessProbe: Probe | None = None
    livenessProbe: Probe | None = None
    startupProbe: Probe | None = None
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = None
    resources: dict[str, Any] | None = None


class TopologySpreadConstraint(K8sModel):
    maxSkew: PositiveInt
    topologyKey: NonEmptyStr
    whenUnsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    labelSelector: LabelSelector | None = None
    minDomains: PositiveInt | None = None
    matchLabelKeys: list[str] | None = None
    nodeAffinityPolicy: Literal["Honor", "Ignore"] | None = None
    nodeTaintsPolicy: Literal["Honor", "Ignore"] | None = None


class Volume(K8sModel):
    name: DnsLabel


class PodSpec(K8sModel):
    containers: Annotated[
        list[Container], _rule(lambda v: None if v else "a pod needs at least one container")
    ]
    initContainers: list[Container] | None = None
    nodeName: DnsSubdomain | None = None
    nodeSelector: dict[QualifiedName, str] | None = None
    serviceAccountName: DnsSubdomain | None = None
    serviceAccount: str | None = None
    topologySpreadConstraints: list[TopologySpreadConstraint] | None = None
    hostNetwork: bool | None = None
    restartPolicy: Literal["Always", "OnFailure", "Never"] | None = None
    terminationGracePeriodSeconds: NonNegInt | None = None
    volumes: list[Volume] | None = None
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] | None = None
    hostname: DnsLabel | None = None
    subdomain: DnsLabel | None = None


class PodIP(K8sModel):
    ip: IPAddress


class PodCondition(K8sModel):
    type: NonEmptyStr
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    lastTransitionTime: str | None = None
    lastProbeTime: str | None = None


class PodStatus(K8sModel):
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] | None = None
    podIP: Annotated[str, _rule(lambda v: None if v == "" else checks.check_ip(v))] | None = None
    podIPs: list[PodIP] | None = None
    hostIP: Annotated[str, _rule(lambda v: None if v == "" else checks.check_ip(v))] | None = None
    hostIPs: list[PodIP] | None = None
    conditions: list[PodCondition] | None = None
    reason: str | None = None
    message: str | None = None
    startTime: str | None = None
    containerStatuses: list[dict[str, Any]] | None = None


class Pod(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus | None = None


class ServicePort(K8sModel):
    port: PortNumber
    targetPort: PortOrName | None = None
    name: DnsLabel | None = None
    protocol: Protocol | None = None
    appProtocol: str | None = None
    nodePort: PortNumber | None = None


class ServiceSpec(K8sModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] | None = None
    clusterIP: Annotated[str, _rule(lambda v: None if v in ("", "None") else checks.check_ip(v))] | None = (
        None
    )
    clusterIPs: list[Annotated[str, _rule(lambda v: None if v == "None" else checks.check_ip(v))]] | None = (
        None
    )
    selector: Labels | None = None
    ports: list[ServicePort] | None = None
    externalName: str | None = None
    sessionAffinity: Literal["ClientIP", "None"] | None = None
    publishNotReadyAddresses: bool | None = None
    internalTrafficPolicy: Literal["Cluster", "Local"] | None = None
    externalTrafficPolicy: Literal["Cluster", "Local"] | None = None
    trafficDistribution: str | None = None
    ipFamilies: list[Literal["IPv4", "IPv6"]] | None = None
    ipFamilyPolicy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = None


class Service(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: ServiceSpec | None = None


# --- apps/v1, policy/v1 ------------------------------------------------------------------------


class PodTemplateSpec(K8sModel):
    metadata: TemplateMeta | None = None
    spec: PodSpec


class RollingUpdateDeployment(K8sModel):
    maxSurge: IntOrPercent | None = None
    maxUnavailable: IntOrPercent | None = None


class DeploymentStrategy(K8sModel):
    type: Literal["RollingUpdate", "Recreate"] | None = None
    rollingUpdate: RollingUpdateDeployment | None = None


class DeploymentSpec(K8sModel):
    replicas: NonNegInt | None = None
    selector: LabelSelector
    template: PodTemplateSpec
    strategy: DeploymentStrategy | None = None
    minReadySeconds: NonNegInt | None = None
    revisionHistoryLimit: NonNegInt | None = None
    progressDeadlineSeconds: PositiveInt | None = None
    paused: bool | None = None


class Deployment(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: DeploymentSpec


class ReplicaSetSpec(K8sModel):
    replicas: NonNegInt | None = None
    selector: LabelSelector
    template: PodTemplateSpec
    minReadySeconds: NonNegInt | None = None


class ReplicaSet(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: ReplicaSetSpec
    status: dict[str, Any] | None = None


class PodDisruptionBudgetSpec(K8sModel):
    minAvailable: IntOrPercent | None = None
    maxUnavailable: IntOrPercent | None = None
    selector: LabelSelector | None = None
    unhealthyPodEvictionPolicy: Literal["IfHealthyBudget", "AlwaysAllow"] | None = None


class PodDisruptionBudget(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: PodDisruptionBudgetSpec | None = None
    status: dict[str, Any] | None = None


class Lease(K8sModel):
    """coordination.k8s.io/v1: a node's heartbeat (``kube-node-lease``)."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any] | None = None


# --- autoscaling/v2, autoscaling.k8s.io/v1 ------------------------------------------------------


class CrossVersionObjectReference(K8sModel):
    apiVersion: str | None = None
    kind: NonEmptyStr
    name: NonEmptyStr


class MetricTarget(K8sModel):
    type: Literal["Utilization", "Value", "AverageValue"]
    averageUtilization: PositiveInt | None = None
    averageValue: Annotated[Any, _rule(checks.check_quantity)] | None = None
    value: Annotated[Any, _rule(checks.check_quantity)] | None = None


class ResourceMetricSource(K8sModel):
    name: Literal["cpu", "memory"]
    target: MetricTarget


class MetricIdentifier(K8sModel):
    name: NonEmptyStr
    selector: LabelSelector | None = None


class PodsMetricSource(K8sModel):
    metric: MetricIdentifier
    target: MetricTarget


class MetricSpec(K8sModel):
    type: Literal["Resource", "Pods", "Object", "External", "ContainerResource"]
    resource: ResourceMetricSource | None = None
    pods: PodsMetricSource | None = None
    object: dict[str, Any] | None = None
    external: dict[str, Any] | None = None
    containerResource: dict[str, Any] | None = None


class HPAScalingPolicy(K8sModel):
    type: Literal["Pods", "Percent"]
    value: PositiveInt
    periodSeconds: Annotated[int, _range(1, 1800)]


class HPAScalingRules(K8sModel):
    stabilizationWindowSeconds: Annotated[int, _range(0, 3600)] | None = None
    selectPolicy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[HPAScalingPolicy] | None = None
    tolerance: Annotated[Any, _rule(checks.check_quantity)] | None = None


class HorizontalPodAutoscalerBehavior(K8sModel):
    scaleUp: HPAScalingRules | None = None
    scaleDown: HPAScalingRules | None = None


class HorizontalPodAutoscalerSpec(K8sModel):
    scaleTargetRef: CrossVersionObjectReference
    minReplicas: PositiveInt | None = None
    maxReplicas: PositiveInt
    metrics: list[MetricSpec] | None = None
    behavior: HorizontalPodAutoscalerBehavior | None = None


class HorizontalPodAutoscaler(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: HorizontalPodAutoscalerSpec
    status: dict[str, Any] | None = None


class VPAUpdatePolicy(K8sModel):
    updateMode: Literal["Off", "Initial", "Recreate", "InPlaceOrRecreate", "Auto"] | None = None
    minReplicas: PositiveInt | None = None


class VerticalPodAutoscalerSpec(K8sModel):
    targetRef: CrossVersionObjectReference
    updatePolicy: VPAUpdatePolicy | None = None
    resourcePolicy: dict[str, Any] | None = None
    recommenders: list[dict[str, Any]] | None = None


class VerticalPodAutoscaler(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: VerticalPodAutoscalerSpec
    status: dict[str, Any] | None = None


# --- gateway.networking.k8s.io ---------------------------------------------------------------

SectionName = DnsSubdomain


class GatewayClassSpec(K8sModel):
    controllerName: NonEmptyStr
    description: str | None = None
    parametersRef: dict[str, Any] | None = None


class GatewayClass(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: GatewayClassSpec


class RouteNamespaces(K8sModel):
    from_: Literal["All", "Same", "Selector"] | None = Field(default=None, alias="from")
    selector: LabelSelector | None = None


class RouteGroupKind(K8sModel):
    group: str | None = None
    kind: NonEmptyStr


class AllowedRoutes(K8sModel):
    namespaces: RouteNamespaces | None = None
    kinds: list[RouteGroupKind] | None = None


class Listener(K8sModel):
    name: SectionName
    hostname: GatewayHostname | None = None
    port: PortNumber
    protocol: GatewayProtocol
    tls: dict[str, Any] | None = None
    allowedRoutes: AllowedRoutes | None = None


class GatewayAddress(K8sModel):
    type: str | None = None
    value: NonEmptyStr


class GatewayInfrastructure(K8sModel):
    """What to put on the resources made for a Gateway (GEP-1867); ambit reads labels and annotations."""

    labels: Labels | None = None
    annotations: dict[QualifiedName, str] | None = None
    parametersRef: dict[str, Any] | None = None


class GatewaySpec(K8sModel):
    gatewayClassName: DnsSubdomain
    listeners: Annotated[
        list[Listener], _rule(lambda v: None if 1 <= len(v) <= 64 else "must have between 1 and 64 listeners")
    ]
    addresses: list[GatewayAddress] | None = None
    infrastructure: GatewayInfrastructure | None = None


class Gateway(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: GatewaySpec
    status: dict[str, Any] | None = None


class ParentReference(K8sModel):
    group: str | None = None
    kind: str | None = None
    namespace: DnsLabel | None = None
    name: NonEmptyStr
    sectionName: SectionName | None = None
    port: PortNumber | None = None


class BackendObjectReference(K8sModel):
    group: str | None = None
    kind: str | None = None
    name: NonEmptyStr
    namespace: DnsLabel | None = None
    port: PortNumber | None = None


# Gateway API HTTPHeaderName (an RFC 9110 token), for header and query parameter names in routes
_HTTP_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
HTTPHeaderName = Annotated[
    str,
    _rule(
        lambda v: (
            None
            if _HTTP_HEADER_NAME.fullmatch(v)
            else f"{v!r} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"
        )
    ),
]


class HeaderValue(K8sModel):
    name: HTTPHeaderName
    value: str


class HeaderModifier(K8sModel):
    set: list[HeaderValue] | None = None
    add: list[HeaderValue] | None = None
    remove: list[HTTPHeaderName] | None = None


class RequestMirror(K8sModel):
    backendRef: BackendObjectReference
    percent: Annotated[int, _range(0, 100)] | None = None
    fraction: dict[str, Any] | None = None


class PathModifier(K8sModel):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replaceFullPath: str | None = None
    replacePrefixMatch: str | None = None


class RequestRedirect(K8sModel):
    scheme: Literal["http", "https"] | None = None
    hostname: GatewayHostname | None = None
    path: PathModifier | None = None
    port: PortNumber | None = None
    statusCode: Literal[301, 302, 303, 307, 308] | None = None


class URLRewrite(K8sModel):
    hostname: GatewayHostname | None = None
    path: PathModifier | None = None


class LocalObjectReference(K8sModel):
    group: str
    kind: NonEmptyStr
    name: NonEmptyStr


class HTTPRouteFilter(K8sModel):
    type: Literal[
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestMirror",
        "RequestRedirect",
        "URLRewrite",
        "ExtensionRef",
        "CORS",
        "ExternalAuth",
    ]
    requestHeaderModifier: HeaderModifier | None = None
    responseHeaderModifier: HeaderModifier | None = None
    requestMirror: RequestMirror | None = None
    requestRedirect: RequestRedirect | None = None
    urlRewrite: URLRewrite | None = None
    extensionRef: LocalObjectReference | None = None


class GRPCRouteFilter(K8sModel):
    type: Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef"]
    requestHeaderModifier: HeaderModifier | None = None
    responseHeaderModifier: HeaderModifier | None = None
    requestMirror: RequestMirror | None = None
    extensionRef: LocalObjectReference | None = None


class HTTPBackendRef(BackendObjectReference):
    weight: Annotated[int, _range(0, 1_000_000)] | None = None
    filters: list[HTTPRouteFilter] | None = None


class GRPCBackendRef(BackendObjectReference):
    weight: Annotated[int, _range(0, 1_000_000)] | None = None
    filters: list[GRPCRouteFilter] | None = None


class BackendRef(BackendObjectReference):
    weight: Annotated[int, _range(0, 1_000_000)] | None = None


class HTTPPathMatch(K8sModel):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] | None = None
    value: str | None = None


class HTTPHeaderMatch(K8sModel):
    type: Literal["Exact", "RegularExpression"] | None = None
    name: HTTPHeaderName
    value: str


class HTTPRouteMatch(K8sModel):
    path: HTTPPathMatch | None = None
    headers: list[HTTPHeaderMatch] | None = None
    queryParams: list[HTTPHeaderMatch] | None = None
    method: Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] | None = (
        None
    )


class HTTPRouteTimeouts(K8sModel):
    request: GatewayDuration | None = None
    backendRequest: GatewayDuration | None = None


class HTTPRouteRetry(K8sModel):
    codes: list[Annotated[int, _range(400, 599)]] | None = None
    attempts: NonNegInt | None = None
    backoff: GatewayDuration | None = None


class HTTPRouteRule(K8sModel):
    name: SectionName | None = None
    matches: list[HTTPRouteMatch] | None = None
    filters: list[HTTPRouteFilter] | None = None
    backendRefs: list[HTTPBackendRef] | None = None
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None


def _at_most(limit: int, what: str) -> AfterValidator:
    return _rule(lambda v: None if len(v) <= limit else f"must have at most {limit} {what}, got {len(v)}")


class HTTPRouteSpec(K8sModel):
    parentRefs: Annotated[list[ParentReference], _at_most(32, "parentRefs")] | None = None
    hostnames: list[GatewayHostname] | None = None
    rules: Annotated[list[HTTPRouteRule], _at_most(16, "rules")] | None = None


class HTTPRoute(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: HTTPRouteSpec
    status: dict[str, Any] | None = None


class GRPCMethodMatch(K8sModel):
    type: Literal["Exact", "RegularExpression"] | None = None
    service: str | None = None
    method: str | None = None


class GRPCRouteMatch(K8sModel):
    method: GRPCMethodMatch | None = None
    headers: list[HTTPHeaderMatch] | None = None


class GRPCRouteRule(K8sModel):
    name: SectionName | None = None
    matches: list[GRPCRouteMatch] | None = None
    filters: list[GRPCRouteFilter] | None = None
    backendRefs: list[GRPCBackendRef] | None = None


class GRPCRouteSpec(K8sModel):
    parentRefs: Annotated[list[ParentReference], _at_most(32, "parentRefs")] | None = None
    hostnames: list[GatewayHostname] | None = None
    rules: Annotated[list[GRPCRouteRule], _at_most(16, "rules")] | None = None


class GRPCRoute(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: GRPCRouteSpec
    status: dict[str, Any] | None = None


class TCPRouteRule(K8sModel):
    name: SectionName | None = None
    backendRefs: Annotated[
        list[BackendRef], _rule(lambda v: None if v else "must have at least 1 backendRef")
    ]


class TCPRouteSpec(K8sModel):
    parentRefs: Annotated[list[ParentReference], _at_most(32, "parentRefs")] | None = None
    rules: Annotated[
        list[TCPRouteRule], _rule(lambda v: None if 1 <= len(v) <= 16 else "must have 1 to 16 rules")
    ]


class TCPRoute(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: TCPRouteSpec
    status: dict[str, Any] | None = None


# --- security.istio.io -------------------------------------------------------------------------

NonEmptyList = list[NonEmptyStr]


class Source(K8sModel):
    principals: NonEmptyList | None = None
    notPrincipals: NonEmptyList | None = None
    requestPrincipals: NonEmptyList | None = None
    notRequestPrincipals: NonEmptyList | None = None
    namespaces: NonEmptyList | None = None
    notNamespaces: NonEmptyList | None = None
    serviceAccounts: NonEmptyList | None = None
    notServiceAccounts: NonEmptyList | None = None
    ipBlocks: list[IPOrCidr] | None = None
    notIpBlocks: list[IPOrCidr] | None = None
    remoteIpBlocks: list[IPOrCidr] | None = None
    notRemoteIpBlocks: list[IPOrCidr] | None = None


class Operation(K8sModel):
    hosts: NonEmptyList | None = None
    notHosts: NonEmptyList | None = None
    ports: list[PortString] | None = None
    notPorts: list[PortString] | None = None
    methods: NonEmptyList | None = None
    notMethods: NonEmptyList | None = None
    paths: NonEmptyList | None = None
    notPaths: NonEmptyList | None = None


class RuleFrom(K8sModel):
    source: Source


class RuleTo(K8sModel):
    operation: Operation


class Condition(K8sModel):
    key: NonEmptyStr
    values: list[str] | None = None
    notValues: list[str] | None = None


class AuthorizationRule(K8sModel):
    from_: list[RuleFrom] | None = Field(default=None, alias="from")
    to: list[RuleTo] | None = None
    when: list[Condition] | None = None


class PolicyTargetReference(K8sModel):
    group: str | None = None
    kind: NonEmptyStr
    name: NonEmptyStr
    namespace: str | None = None


class ExtensionProvider(K8sModel):
    name: NonEmptyStr


class AuthorizationPolicySpec(K8sModel):
    selector: WorkloadSelector | None = None
    targetRef: PolicyTargetReference | None = None
    targetRefs: list[PolicyTargetReference] | None = None
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] | None = None
    provider: ExtensionProvider | None = None
    rules: list[AuthorizationRule] | None = None


class AuthorizationPolicy(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: AuthorizationPolicySpec | None = None


MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class MutualTLS(K8sModel):
    mode: MtlsMode | None = None


class PeerAuthenticationSpec(K8sModel):
    selector: WorkloadSelector | None = None
    mtls: MutualTLS | None = None
    portLevelMtls: dict[str, MutualTLS] | None = None


class PeerAuthentication(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: PeerAuthenticationSpec | None = None


# --- networking.istio.io ------------------------------------------------------------------------
# VirtualService (v1, v1beta1, v1alpha3): the fields ambit.control.translate_virtualservice reads, typed as
# istio/api networking/v1alpha3/virtual_service.proto; the rest (tls, tcp, corsPolicy, ...) kept as
# given. Durations are Go/protobuf-JSON durations ("10s", "1.5s", "500ms", "1h30m").

_ISTIO_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?(?:ns|us|µs|ms|s|m|h))+")
IstioDuration = Annotated[
    str,
    _rule(
        lambda v: (
            None if _ISTIO_DURATION.fullmatch(v) else f"{v!r} is not a duration (like '10s', '1.5s', '500ms')"
        )
    ),
]
Percentage = Annotated[float, _rule(lambda v: None if 0.0 <= v <= 100.0 else f"must be in 0..100, got {v}")]


def _one_of_string_match(value: Any) -> str | None:
    given = [k for k in ("exact", "prefix", "regex") if getattr(value, k) is not None]
    return None if len(given) <= 1 else f"only one of exact, prefix and regex may be set, got {given}"


class IstioStringMatch(K8sModel):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


OneStringMatch = Annotated[IstioStringMatch, _rule(_one_of_string_match)]


class IstioPortSelector(K8sModel):
    number: PortNumber | None = None


class IstioDestination(K8sModel):
    host: NonEmptyStr
    subset: str | None = None
    port: IstioPortSelector | None = None


class IstioHeaderOperations(K8sModel):
    set: dict[str, str] | None = None
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class IstioHeaders(K8sModel):
    request: IstioHeaderOperations | None = None
    response: IstioHeaderOperations | None = None


class IstioHTTPRouteDestination(K8sModel):
    destination: IstioDestination
    weight: NonNegInt | None = None
    headers: IstioHeaders | None = None


class IstioHTTPMatchRequest(K8sModel):
    name: str | None = None
    uri: OneStringMatch | None = None
    scheme: OneStringMatch | None = None
    method: OneStringMatch | None = None
    authority: OneStringMatch | None = None
    headers: dict[str, OneStringMatch] | None = None
    queryParams: dict[str, OneStringMatch] | None = None
    withoutHeaders: dict[str, OneStringMatch] | None = None
    port: PortNumber | None = None
    ignoreUriCase: bool | None = None
    sourceLabels: dict[str, str] | None = None
    sourceNamespace: str | None = None
    gateways: list[str] | None = None


class IstioHTTPRetry(K8sModel):
    attempts: NonNegInt | None = None
    perTryTimeout: IstioDuration | None = None
    retryOn: str | None = None
    retryRemoteLocalities: bool | None = None
    retryIgnorePreviousHosts: bool | None = None
    backoff: IstioDuration | None = None


class IstioPercent(K8sModel):
    value: Percentage | None = None


class IstioFaultDelay(K8sModel):
    fixedDelay: IstioDuration | None = None
    percentage: IstioPercent | None = None
    percent: Annotated[int, _range(0, 100)] | None = None


class IstioFaultAbort(K8sModel):
    httpStatus: int | None = None
    grpcStatus: str | None = None
    http2Error: str | None = None
    percentage: IstioPercent | None = None


class IstioHTTPFaultInjection(K8sModel):
    delay: IstioFaultDelay | None = None
    abort: IstioFaultAbort | None = None


class IstioHTTPRedirect(K8sModel):
    uri: str | None = None
    authority: str | None = None
    port: PortNumber | None = None
    derivePort: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirectCode: NonNegInt | None = None
    prefixRewrite: str | None = None


class IstioRegexRewrite(K8sModel):
    match: str | None = None
    rewrite: str | None = None


class IstioHTTPRewrite(K8sModel):
    uri: str | None = None
    authority: str | None = None
    uriRegexRewrite: IstioRegexRewrite | None = None


class IstioHTTPMirrorPolicy(K8sModel):
    destination: IstioDestination
    percentage: IstioPercent | None = None


class IstioHTTPRoute(K8sModel):
    name: str | None = None
    match: list[IstioHTTPMatchRequest] | None = None
    route: list[IstioHTTPRouteDestination] | None = None
    redirect: IstioHTTPRedirect | None = None
    rewrite: IstioHTTPRewrite | None = None
    timeout: IstioDuration | None = None
    retries: IstioHTTPRetry | None = None
    fault: IstioHTTPFaultInjection | None = None
    mirror: IstioDestination | None = None
    mirrors: list[IstioHTTPMirrorPolicy] | None = None
    mirrorPercent: Annotated[int, _range(0, 100)] | None = None
    mirrorPercentage: IstioPercent | None = None
    headers: IstioHeaders | None = None


class VirtualServiceSpec(K8sModel):
    hosts: list[NonEmptyStr] | None = None
    gateways: list[NonEmptyStr] | None = None
    http: list[IstioHTTPRoute] | None = None
    exportTo: list[str] | None = None


class VirtualService(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: VirtualServiceSpec
    status: dict[str, Any] | None = None


# DestinationRule (v1, v1beta1, v1alpha3): the trafficPolicy fields ambit.control.translate_destination_rule
# reads, typed as istio/api networking/v1alpha3/destination_rule.proto and its CRD, with istiod's webhook
# rules for single values (pkg/config/validation: validateConnectionPool wants the int32 counts
# non-negative, validateOutlierDetection percentages in 0..100, agent.ValidateDuration durations of at
# least 1ms to ms precision; a subset's name a DNS-1123 label, ValidateSubsetName, its labels valid
# Kubernetes labels); portLevelSettings, loadBalancer, tls, ... kept as given.

IstioMsDuration = Annotated[str, _rule(check_istio_duration)]
NonNegInt32 = Annotated[int, _range(0, 2**31 - 1)]
UInt32 = Annotated[int, _range(0, 2**32 - 1)]
Int32 = Annotated[int, _range(-(2**31), 2**31 - 1)]
Percent = Annotated[int, _range(0, 100)]


class DestinationRuleTCPSettings(K8sModel):
    maxConnections: NonNegInt32 | None = None
    connectTimeout: IstioMsDuration | None = None
    maxConnectionDuration: IstioMsDuration | None = None
    idleTimeout: str | None = None  # "0s" turns it off, so not held to the 1ms rule


class DestinationRuleHTTPSettings(K8sModel):
    http1MaxPendingRequests: NonNegInt32 | None = None
    http2MaxRequests: NonNegInt32 | None = None
    maxRequestsPerConnection: NonNegInt32 | None = None
    maxRetries: NonNegInt32 | None = None
    maxConcurrentStreams: NonNegInt32 | None = None
    idleTimeout: IstioMsDuration | None = None
    h2UpgradePolicy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    useClientProtocol: bool | None = None


class DestinationRuleConnectionPool(K8sModel):
    tcp: DestinationRuleTCPSettings | None = None
    http: DestinationRuleHTTPSettings | None = None


class DestinationRuleOutlierDetection(K8sModel):
    consecutiveErrors: Int32 | None = None  # deprecated; istiod warns and ignores it
    splitExternalLocalOriginErrors: bool | None = None
    consecutiveLocalOriginFailures: UInt32 | None = None
    consecutiveGatewayErrors: UInt32 | None = None
    consecutive5xxErrors: UInt32 | None = None
    interval: IstioMsDuration | None = None
    baseEjectionTime: IstioMsDuration | None = None
    maxEjectionPercent: Percent | None = None
    minHealthPercent: Percent | None = None
    outlierDetectionHttpErrorCodes: list[Annotated[int, _range(100, 599)]] | None = None


class DestinationRuleTrafficPolicy(K8sModel):
    connectionPool: DestinationRuleConnectionPool | None = None
    outlierDetection: DestinationRuleOutlierDetection | None = None


class DestinationRuleSubset(K8sModel):
    name: DnsLabel
    labels: Labels | None = None
    trafficPolicy: DestinationRuleTrafficPolicy | None = None  # validated; ambit ignores it (a warning)


class DestinationRuleSpec(K8sModel):
    host: NonEmptyStr
    trafficPolicy: DestinationRuleTrafficPolicy | None = None
    subsets: list[DestinationRuleSubset] | None = None
    exportTo: list[str] | None = None
    workloadSelector: WorkloadSelector | None = None


class DestinationRule(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: DestinationRuleSpec
    status: dict[str, Any] | None = None


# --- ReferenceGrant ----------------------------------------------------------------------------
# ReferenceGrant (gateway.networking.k8s.io v1beta1, and v1 since Gateway API 1.5: one schema), typed as
# its CRD: from and to each 1..16 entries; group "" or a DNS subdomain (the CRD's pattern), kind the
# CRD's pattern, from.namespace a DNS-1123 label, to.name 1..253 characters. ambit.control.reference_grants
# says what a grant permits.

_GATEWAY_KIND = re.compile(r"[a-zA-Z](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?")


def _gateway_group(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > 253:
        return f"must be at most 253 characters, got {len(value)}"
    return checks.check_dns1123_subdomain(value)


def _gateway_kind(value: str) -> str | None:
    if not 1 <= len(value) <= 63:
        return f"must be between 1 and 63 characters, got {len(value)}"
    if not _GATEWAY_KIND.fullmatch(value):
        return f"{value!r} is not a kind (a letter, then letters, digits and '-', not ending in '-')"
    return None


def _one_to_sixteen(value: Any) -> str | None:
    return None if 1 <= len(value) <= 16 else f"must have between 1 and 16 entries, got {len(value)}"


GatewayGroup = Annotated[str, _rule(_gateway_group)]
GatewayKind = Annotated[str, _rule(_gateway_kind)]


class ReferenceGrantFrom(K8sModel):
    group: GatewayGroup
    kind: GatewayKind
    namespace: DnsLabel


class ReferenceGrantTo(K8sModel):
    group: GatewayGroup
    kind: GatewayKind
    name: (
        Annotated[
            str, _rule(lambda v: None if 1 <= len(v) <= 253 else "must be between 1 and 253 characters")
        ]
        | None
    ) = None


class ReferenceGrantSpec(K8sModel):
    from_: Annotated[list[ReferenceGrantFrom], _rule(_one_to_sixteen)] = Field(alias="from")
    to: Annotated[list[ReferenceGrantTo], _rule(_one_to_sixteen)]


class ReferenceGrant(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: ReferenceGrantSpec


# --- policy.ambit.dev ---------------------------------------------------------------------------
# HTTPLocalRateLimitPolicy (v1alpha1): Linkerd's HTTPLocalRateLimitPolicy shape (total, identity, overrides
# with clientRefs; https://linkerd.io/2-edge/reference/rate-limiting/) attached with Gateway API
# targetRefs, plus a burst; ambit.control.translate_rate_limit reads it, ambit.model.rate_limit says what it
# means. Counts are uint32 of at least 1 (Linkerd's requestsPerSecond is a u32). Rules across fields (at
# least one limit, group matching kind, no limit above total, own namespace) are
# ambit.resources.rules.http_local_rate_limit_policy.

RateCount = Annotated[int, _range(1, 2**32 - 1)]
OptionalNamespace = Annotated[str, _rule(lambda v: None if v == "" else checks.check_dns1123_label(v))]


def _not_empty_list(value: Any) -> str | None:
    return None if value else "must list at least one entry"


def _core_group(value: Any) -> str | None:
    return None if value in ("", "core") else f"must be the core group ('' or 'core'), got {value!r}"


class RateLimitSettings(K8sModel):
    requestsPerSecond: RateCount
    burst: RateCount | None = None  # default: requestsPerSecond (one second's worth)


class RateLimitTargetReference(K8sModel):
    group: str | None = None  # "" / "core" for a Service, gateway.networking.k8s.io for a Gateway
    kind: Literal["Service", "Gateway"]
    name: DnsSubdomain
    namespace: DnsLabel | None = None  # the policy's own, if given


class RateLimitClientReference(K8sModel):
    group: Annotated[str, _rule(_core_group)] | None = None
    kind: Literal["ServiceAccount"]
    name: DnsSubdomain
    namespace: OptionalNamespace | None = None  # unset or "": the policy's namespace (as Linkerd)


class RateLimitOverride(K8sModel):
    requestsPerSecond: RateCount
    burst: RateCount | None = None
    clientRefs: Annotated[list[RateLimitClientReference], _rule(_not_empty_list)]


class HTTPLocalRateLimitPolicySpec(K8sModel):
    targetRefs: Annotated[list[RateLimitTargetReference], _rule(_not_empty_list)]
    total: RateLimitSettings | None = None
    identity: RateLimitSettings | None = None
    overrides: list[RateLimitOverride] | None = None


class HTTPLocalRateLimitPolicy(K8sModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: HTTPLocalRateLimitPolicySpec
    status: dict[str, Any] | None = None


SCHEMAS: dict[str, type[K8sModel]] = {
    "Namespace": Namespace,
    "Node": Node,
    "ServiceAccount": ServiceAccount,
    "Pod": Pod,
    "Service": Service,
    "Deployment": Deployment,
    "ReplicaSet": ReplicaSet,
    "PodDisruptionBudget": PodDisruptionBudget,
    "Lease": Lease,
    "HorizontalPodAutoscaler": HorizontalPodAutoscaler,
    "VerticalPodAutoscaler": VerticalPodAutoscaler,
    "GatewayClass": GatewayClass,
    "Gateway": Gateway,
    "HTTPRoute": HTTPRoute,
    "GRPCRoute": GRPCRoute,
    "TCPRoute": TCPRoute,
    "ReferenceGrant": ReferenceGrant,
    "AuthorizationPolicy": AuthorizationPolicy,
    "PeerAuthentication": PeerAuthentication,
    "VirtualService": VirtualService,
    "DestinationRule": DestinationRule,
    "HTTPLocalRateLimitPolicy": HTTPLocalRateLimitPolicy,
}
