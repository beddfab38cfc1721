"""Layer L1: authorization decisions, pure (stdlib and ``ambit.model`` only, no I/O).

* :mod:`ambit.authz.l4` — :func:`authorize` (a connection against a workload's L4 policies, ztunnel's
  semantics), :func:`connection_for`, :class:`Decision`;
* :mod:`ambit.authz.l7` — :func:`authorize_request` (an HTTP request through a waypoint against the
  L7 policies attached to it, Istio's semantics), :func:`request_for`, :class:`RequestAttributes`,
  :class:`L7Decision`, :data:`RBAC_DENIED_BODY`;
* :mod:`ambit.authz.common` — CIDR and address parsing and the three-valued logic both use to fail
  closed on what does not parse.

Callers import from ``ambit.authz``.
"""

from ambit.authz.common import IPAddress, IPNetwork, parse_cidr, parse_ip
from ambit.authz.l4 import Connection, Decision, authorize, connection_for, matches, principal_of
from ambit.authz.l7 import (
    RBAC_DENIED_BODY,
    RBAC_DENIED_STATUS,
    L7Decision,
    RequestAttributes,
    authorize_request,
    request_for,
    request_matches,
    url_path,
)

__all__ = [
    "RBAC_DENIED_BODY",
    "RBAC_DENIED_STATUS",
    "Connection",
    "Decision",
    "IPAddress",
    "IPNetwork",
    "L7Decision",
    "RequestAttributes",
    "authorize",
    "authorize_request",
    "connection_for",
    "matches",
    "parse_cidr",
    "parse_ip",
    "principal_of",
    "request_for",
    "request_matches",
    "url_path",
]
