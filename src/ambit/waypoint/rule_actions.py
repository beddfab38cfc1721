"""What a route rule does to a request by itself, without an upstream: header modifiers, a fault's abort,
a redirect's answer."""

from __future__ import annotations

from ambit.model.route import FaultPolicy, HeaderModifier, PathMatch, RouteRule
from ambit.routing.route_filters import redirect_location
from ambit.waypoint.exchange import BodyStream, Headers, Request, Response, local_response

FAULT_ABORT_BODY = "fault filter abort"  # Envoy's fault filter's local reply


def modify_headers(headers: Headers, modifier: HeaderModifier) -> Headers:
    """Gateway API's RequestHeaderModifier / ResponseHeaderModifier: ``set`` replaces (or adds),
    ``add`` appends, ``remove`` drops every value; names compared in lower case."""
    setting = {name.lower().encode(): value.encode() for name, value in modifier.set}
    removing = {name.lower().encode() for name in modifier.remove} | set(setting)
    out: Headers = [(n, v) for n, v in headers if n not in removing]
    out += list(setting.items())
    out += [(name.lower().encode(), value.encode()) for name, value in modifier.add]
    return out


def fault_abort(fault: FaultPolicy, status: int) -> Response:
    """The waypoint's answer to a request a fault aborts with ``status`` (flag ``FI``): an HTTP error,
    or for a gRPC abort a trailers-only gRPC response carrying ``status`` as ``grpc-status``."""
    if fault.abort_grpc_status is not None:
        headers: Headers = [
            (b"content-type", b"application/grpc"),
            (b"grpc-status", str(status).encode()),
            (b"grpc-message", FAULT_ABORT_BODY.encode()),
        ]
        return Response(200, headers, BodyStream.of(), flags="FI", details="fault_filter_abort")
    return local_response(status, FAULT_ABORT_BODY, flags="FI", details="fault_filter_abort")


def redirect_response(rule: RouteRule, matched: PathMatch | None, request: Request, port: int) -> Response:
    """A rule's RequestRedirect: its status with ``Location`` (:mod:`ambit.routing.route_filters`);
    the rule's response header modifier applies to it, as Envoy applies it to direct responses."""
    assert rule.redirect is not None
    location = redirect_location(
        rule.redirect,
        matched=matched,
        scheme=request.scheme.decode("latin-1"),
        host=request.authority.decode("latin-1"),
        port=port,
        path_and_query=request.path.decode("latin-1"),
    )
    response = Response(
        rule.redirect.status,
        [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
        BodyStream.of(),
    )
    if rule.response_headers is not None:
        response.headers = modify_headers(response.headers, rule.response_headers)
    return response
