"""Routing plans for ztunnel's outbound and inbound paths: decide, then do (DESIGN §2, §5).

Modules: :mod:`.plans` (the values a decision returns, response flags), :mod:`.outbound` (15001),
:mod:`.inbound` (15008/15006 admission), :mod:`.addresses` (shared address helpers). This package
re-exports their public names, so callers import from ``ambit.routing``.

Pure functions of a :class:`~ambit.state.snapshot.Snapshot`; the caller's sockets carry out the plan.
No I/O; randomness is injected (``rng``) so every choice is reproducible in tests.

Outbound (:func:`plan_outbound`, :func:`outbound_candidates`), in ztunnel's order (facts §1.7):

1. the source must be HBONE-enrolled (ztunnel only captures enrolled pods), else refused;
2. ``dst_ip`` is a Service VIP: the port must be one of the service's ports, else refused. A
   service bound to a waypoint goes to one of the waypoint's ready replicas over HBONE
   (``<replica ip>:15008``, authority the original ``VIP:port``, expected identity the replica's;
   every ready replica is a candidate, in capacity-weighted random order, no locality preference,
   ejected replicas last — :mod:`.ejection`); with no ready replica it is refused, never sent
   around the waypoint. Otherwise an endpoint is chosen among ``snapshot.endpoints`` that
   are HEALTHY, have an address and serve the port (see :func:`_target_port`), best locality first
   (same node, then same region and zone, then same region, then the rest; an empty locality field
   never counts as a match), randomly weighted by ``capacity`` within the best rank. An endpoint
   with capacity ≤ 0 is used only when no endpoint with capacity is usable (then uniformly). The
   endpoint is reached over HBONE (``<ip>:15008``, authority ``<ip>:<target port>``, expected
   identity its own) when it is enrolled, else as plain TCP to ``(ip, target port)``. No usable
   endpoint: refused, never passed through to the VIP. Only service-addressed traffic goes to a
   service waypoint; an endpoint's own workload waypoint is not used here, as in ztunnel. (ztunnel
   applies locality only when the Service asks for it, via ``trafficDistribution`` or
   ``internalTrafficPolicy``; ambit's model has no such field yet and always prefers locality,
   FAILOVER-style: a better rank wins, worse ranks are the spill-over.)
3. ``dst_ip`` is a workload address: bound to a workload waypoint → its replicas as in 2, authority
   the original ``podIP:port``; else HBONE when enrolled, plain TCP otherwise;
4. unknown address inside one of ``cluster_cidrs``: refused (fail closed, DESIGN §5); outside:
   plain TCP passthrough. An unparsable ``dst_ip`` or cluster CIDR refuses.

The waypoint's own view (``at_waypoint=True``) ignores the binding that brought the traffic to it and
balances over every endpoint with no locality preference (Envoy's default in Istio's waypoints).
:mod:`.http_routes` is the waypoint's Gateway API route table (precedence, matching, weighted
backends, retry policy, the TCPRoute rule); :mod:`.route_filters` what a rule's redirect, rewrite and
mirrors do to a request; :mod:`.outlier` a DestinationRule's outlier detection and request limit;
:mod:`.rate_limit` the HTTPLocalRateLimitPolicy token buckets; :mod:`.subsets` which workloads a
DestinationRule subset holds; :mod:`.ejection` the outlier ejection both proxies use.

``exclude`` holds workload uids already tried (retry on connect failure); an excluded endpoint is
never chosen, and an excluded pod-addressed destination is refused. An IPv4-mapped ``dst_ip``
(``::ffff:10.0.0.1``) is treated as the IPv4 address. Of an endpoint's addresses, the first of the
destination's IP family is used (else the first).

Inbound (:func:`plan_inbound` for HBONE on 15008, :func:`plan_inbound_plaintext` for 15006): the
workload is looked up again in the snapshot by uid (its current addresses and policy list; gone →
503); the target IP must be one of its addresses (400 "IP mismatch", as ztunnel); the target port
must be a valid port that is not one of ztunnel's own (400); then L4 authorization over
``snapshot.policies_for(workload)`` (denied → 401 with the reason). A refusal is one value: the
status, the response flag the telemetry records (``DENY`` for a denial) and the reason.

Before that, :func:`inbound_source` says who an HBONE CONNECT is from: the client must be a workload
identity (a node identity never is a client: 401), and the source IP is the TCP peer's address —
``forwarded: for=`` counts only from the destination's own waypoint (a workload presenting the
identity of an endpoint of the waypoint the pod or one of its services is bound to), as ztunnel
does: a waypoint terminates the client's tunnel, so its TCP address is its own and only the header
names the real client. From anyone else the header is ignored, since a client could otherwise claim
any source IP and slip past a ``source_ips`` policy. ``forwarded: host=`` names the service the
client addressed (telemetry, and the no-bypass rule), if it is one of the pod's. **No bypass**
(:func:`waypoint_bypass`): traffic a waypoint covers is admitted only from that waypoint's identities —
service-addressed traffic (``host=`` names the service) to a service with a waypoint, pod-addressed
traffic to a pod with a workload waypoint, plaintext to such a pod too; with no waypoint endpoint it is
refused (401); traffic no waypoint covers is admitted as in Istio. On the source side,
:func:`answer_refusal` says what the destination's answer means: ``503`` tries the next candidate,
``401`` is a denial, anything else a connect failure.
"""

from __future__ import annotations

from ambit.routing.inbound import (
    answer_refusal,
    inbound_source,
    plan_inbound,
    plan_inbound_plaintext,
    service_for,
    source_ip_for,
    waypoint_bypass,
    waypoint_identities,
)
from ambit.routing.outbound import outbound_candidates, plan_outbound
from ambit.routing.plans import (
    FLAG_CONNECT,
    FLAG_DENY,
    FLAG_IDENTITY,
    FLAG_NONE,
    FLAG_TLS,
    ZTUNNEL_PORTS,
    HbonePlan,
    InboundPlan,
    InboundRefusal,
    InboundSource,
    OutboundPlan,
    PassthroughPlan,
    RouteError,
)

__all__ = [
    "FLAG_CONNECT",
    "FLAG_DENY",
    "FLAG_IDENTITY",
    "FLAG_NONE",
    "FLAG_TLS",
    "ZTUNNEL_PORTS",
    "HbonePlan",
    "InboundPlan",
    "InboundRefusal",
    "InboundSource",
    "OutboundPlan",
    "PassthroughPlan",
    "RouteError",
    "answer_refusal",
    "inbound_source",
    "outbound_candidates",
    "plan_inbound",
    "plan_inbound_plaintext",
    "plan_outbound",
    "service_for",
    "source_ip_for",
    "waypoint_bypass",
    "waypoint_identities",
]
