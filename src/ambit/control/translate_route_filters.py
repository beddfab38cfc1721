"""Route filters that decide where and how a request goes, as written → ``ambit.model.route``'s
``RedirectFilter``, ``RewriteFilter`` and the percentage of a ``MirrorFilter``.

Two sources, read here without resolving any Service (the callers resolve mirror backends:
``ambit.control.translate_routes`` for the Gateway API, ``ambit.control.translate_virtualservice``
for Istio). Every reader raises :class:`FilterError` for a filter it cannot apply as written; the
caller decides what the rule does then. Pure: no I/O.

**Gateway API** (``gateway.networking.k8s.io/v1``, standard channel; Istio's ``createRedirectFilter``,
``createRewriteFilter`` and ``createMirrorFilter`` in ``pilot/pkg/config/kube/gateway/conversion.go``):

* ``RequestRedirect`` (:func:`gateway_redirect`): ``statusCode`` 301, 302 (core), 303, 307, 308
  (extended; in the standard channel's enum since Gateway API 1.5, before it 301 and 302 only), default
  **302** (the CRD's default; Istio writes Envoy's 301 when the field is absent, which the API server
  never lets happen); ``scheme`` ``http`` or ``https``; ``hostname``; ``port``; ``path``
  ``ReplaceFullPath`` or ``ReplacePrefixMatch``. No port: the scheme's well-known port when the redirect
  names a scheme, else the port the request addressed (the spec's "Gateway Listener port"; for a GAMMA
  route the Service port); ``ReplacePrefixMatch`` needs every match of the rule to be a ``PathPrefix``
  (the CRD: exactly one);
* ``URLRewrite`` (:func:`gateway_rewrite`): ``hostname`` and ``path`` as for the redirect; a rewrite
  that changes nothing is no rewrite;
* ``RequestMirror`` (:func:`mirror_percent`): ``percent`` (an integer 0..100) or ``fraction``
  (``numerator`` ≥ 0 over ``denominator`` ≥ 1, default 100, numerator ≤ denominator) → a percentage;
  neither: 100 %; both: refused (the CRD allows one).

**VirtualService** (``networking.istio.io``; istio/api ``HTTPRedirect``, ``HTTPRewrite``,
``HTTPMirrorPolicy``; Istio's ``ApplyRedirect``, ``applyHTTPRouteDestination`` and
``validateHTTPRedirect``):

* ``redirect`` (:func:`vs_redirect`): ``uri`` (the whole path) or ``prefixRewrite`` (the matched
  prefix, Envoy's ``prefix_rewrite``; every ``uri`` match of the rule must be a ``prefix``, and not
  ``ignoreUriCase``), never both; ``authority``; ``scheme`` ``http`` or ``https``; ``port``, else
  ``derivePort`` (``FROM_PROTOCOL_DEFAULT``: 80 / 443, ``FROM_REQUEST_PORT``: the port the request
  addressed), else Envoy's default (the port written in the kept host: none with an ``authority``);
  ``redirectCode`` 301, 302, 303, 307 or 308 (default **301**; Istio drops a route with another).
  A redirect that changes nothing is refused, as Istio's validation does;
* ``rewrite`` (:func:`vs_rewrite`): ``uri`` → ``PrefixRewrite`` (the matched prefix's characters, the
  whole path for an exact or regex match), ``authority`` → the host. ``uriRegexRewrite`` is not
  supported yet (the caller warns; the rest of the rewrite is kept); a ``uri`` with an
  ``ignoreUriCase`` prefix match is refused (ambit matches those with a regular expression, which
  loses the prefix);
* ``mirrorPercentage.value`` (0..100, fractions allowed), else the deprecated integer
  ``mirrorPercent``, else 100 % (:func:`vs_mirror_percent`); ``mirrors[].percentage.value`` likewise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ambit.model.route import (
    PATH_PREFIX,
    PORT_FROM_HOST,
    PORT_FROM_LISTENER,
    PORT_FROM_SCHEME,
    PREFIX_REWRITE,
    REDIRECT_SCHEMES,
    REDIRECT_STATUSES,
    REPLACE_FULL_PATH,
    REPLACE_PREFIX_MATCH,
    PathModifier,
    RedirectFilter,
    RewriteFilter,
    RouteMatch,
    check_host,
)
from ambit.resources.objects import JSON, mapping

GATEWAY_REDIRECT_STATUS = 302  # the CRD's default statusCode
ISTIO_REDIRECT_STATUS = 301  # HTTPRedirect.redirect_code's default (MOVED_PERMANENTLY)
DEFAULT_FRACTION_DENOMINATOR = 100
MAX_PORT = 65535


class FilterError(ValueError):
    """A filter that cannot be applied as written; the message says why."""


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _string(spec: JSON, field: str) -> str | None:
    """``spec[field]``: None when absent, the string when it is one, FilterError otherwise."""
    if field not in spec or spec[field] is None:
        return None
    value = spec[field]
    if not isinstance(value, str):
        raise FilterError(f"{field} {value!r} is not a string")
    return value


def _host(spec: JSON, field: str) -> str | None:
    value = _string(spec, field)
    if value is None:
        return None
    try:
        return check_host(field, value)
    except ValueError as exc:
        raise FilterError(str(exc)) from None


def _scheme(spec: JSON) -> str | None:
    scheme = _string(spec, "scheme") or None  # "" is unset (proto3 JSON)
    if scheme is not None and scheme not in REDIRECT_SCHEMES:
        raise FilterError(f"scheme {scheme!r} is not http or https")
    return scheme


def _port(spec: JSON) -> int | None:
    if spec.get("port") is None or _integer(spec["port"]) == 0:  # 0: unset (proto3 JSON)
        return None
    port = _integer(spec["port"])
    if port is None or not 1 <= port <= MAX_PORT:
        raise FilterError(f"port {spec['port']!r} is not a port number (1..{MAX_PORT})")
    return port


def _status(value: Any, default: int) -> int:
    if value is None:
        return default
    status = _integer(value)
    if status not in REDIRECT_STATUSES:
        raise FilterError(f"status code {value!r} is not one of {sorted(REDIRECT_STATUSES)}")
    return status


def _modifier(kind: str, value: str) -> PathModifier:
    try:
        return PathModifier(kind, value)
    except ValueError as exc:
        raise FilterError(str(exc)) from None


# --- Gateway API ----------------------------------------------------------------------------------


def _gateway_path(spec: JSON, matches: Iterable[RouteMatch]) -> PathModifier | None:
    if "path" not in spec or spec["path"] is None:
        return None
    path = mapping(spec, "path")
    kind = path.get("type")
    if kind == REPLACE_FULL_PATH:
        value = _string(path, "replaceFullPath")
        if value is None:
            raise FilterError("path type ReplaceFullPath needs replaceFullPath")
        return _modifier(REPLACE_FULL_PATH, value)
    if kind == REPLACE_PREFIX_MATCH:
        value = _string(path, "replacePrefixMatch")
        if value is None:
            raise FilterError("path type ReplacePrefixMatch needs replacePrefixMatch")
        if any(m.path is None or m.path.kind != PATH_PREFIX for m in matches):
            raise FilterError(
                "ReplacePrefixMatch needs the rule's matches to be PathPrefix matches "
                "(the Gateway API requires exactly one)"
            )
        return _modifier(REPLACE_PREFIX_MATCH, value)
    raise FilterError(f"path type {kind!r} is not ReplaceFullPath or ReplacePrefixMatch")


def gateway_redirect(spec: JSON, matches: Iterable[RouteMatch]) -> RedirectFilter:
    """An HTTPRoute ``requestRedirect`` of a rule with ``matches`` (module docstring)."""
    scheme = _scheme(spec)
    return RedirectFilter(
        status=_status(spec.get("statusCode"), GATEWAY_REDIRECT_STATUS),
        scheme=scheme,
        hostname=_host(spec, "hostname"),
        port=_port(spec),
        derive_port=PORT_FROM_SCHEME if scheme is not None else PORT_FROM_LISTENER,
        path=_gateway_path(spec, list(matches)),
    )


def gateway_rewrite(spec: JSON, matches: Iterable[RouteMatch]) -> RewriteFilter | None:
    """An HTTPRoute ``urlRewrite`` of a rule with ``matches``; None when it changes nothing."""
    rewrite = RewriteFilter(hostname=_host(spec, "hostname"), path=_gateway_path(spec, list(matches)))
    return rewrite if rewrite != RewriteFilter() else None


def mirror_percent(spec: JSON) -> float:
    """The share of requests a ``requestMirror`` copies, in percent."""
    has_percent = spec.get("percent") is not None
    has_fraction = spec.get("fraction") is not None
    if has_percent and has_fraction:
        raise FilterError("sets both percent and fraction (only one may be set)")
    if has_percent:
        percent = _integer(spec["percent"])
        if percent is None or not 0 <= percent <= 100:
            raise FilterError(f"percent {spec['percent']!r} is not an integer in 0..100")
        return float(percent)
    if has_fraction:
        fraction = mapping(spec, "fraction")
        numerator = _integer(fraction.get("numerator"))
        raw_denominator = fraction.get("denominator", DEFAULT_FRACTION_DENOMINATOR)
        denominator = _integer(raw_denominator)
        if numerator is None or numerator < 0:
            raise FilterError(f"fraction numerator {fraction.get('numerator')!r} is not a count")
        if denominator is None or denominator < 1:
            raise FilterError(f"fraction denominator {raw_denominator!r} is not at least 1")
        if numerator > denominator:
            raise FilterError(f"fraction {numerator}/{denominator} is more than 1")
        return 100.0 * numerator / denominator
    return 100.0


# --- VirtualService -------------------------------------------------------------------------------


def _uri_kinds(raw_matches: Iterable[JSON]) -> list[tuple[str, bool]]:
    """(the uri match kind, ignoreUriCase) of every match that has a ``uri``."""
    found: list[tuple[str, bool]] = []
    for match in raw_matches:
        uri = match.get("uri")
        if not isinstance(uri, dict):
            continue
        kinds = [k for k in ("exact", "prefix", "regex") if isinstance(uri.get(k), str)]
        if kinds:
            found.append((kinds[0], match.get("ignoreUriCase") is True))
    return found


def _prefix_rewrite_allowed(raw_matches: Iterable[JSON], field: str, *, every_prefix: bool) -> None:
    for kind, ignore_case in _uri_kinds(raw_matches):
        if every_prefix and kind != "prefix":
            raise FilterError(f"{field} needs every uri match of the rule to be a prefix (as Istio)")
        if kind == "prefix" and ignore_case:
            raise FilterError(f"{field} with an ignoreUriCase prefix match is not supported")


def vs_redirect(spec: Any, raw_matches: Iterable[JSON]) -> RedirectFilter:
    """A VirtualService ``http[].redirect`` of a rule whose ``match[]`` is ``raw_matches``."""
    if not isinstance(spec, dict):
        raise FilterError("is not an object")
    matches = list(raw_matches)
    uri = _string(spec, "uri") or None
    prefix = _string(spec, "prefixRewrite") or None
    if uri is not None and prefix is not None:
        raise FilterError("sets both uri and prefixRewrite (only one may be set)")
    path: PathModifier | None = None
    if uri is not None:
        path = _modifier(REPLACE_FULL_PATH, uri)
    elif prefix is not None:
        _prefix_rewrite_allowed(matches, "prefixRewrite", every_prefix=True)
        path = _modifier(PREFIX_REWRITE, prefix)
    authority = _host(spec, "authority") if _string(spec, "authority") else None
    scheme = _scheme(spec)
    port = _port(spec)
    derive = spec.get("derivePort")
    if port is not None or derive is None:
        mode = PORT_FROM_HOST
    elif derive == "FROM_PROTOCOL_DEFAULT":
        mode = PORT_FROM_SCHEME
    elif derive == "FROM_REQUEST_PORT":
        mode = PORT_FROM_LISTENER
    else:
        raise FilterError(f"derivePort {derive!r} is not FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT")
    if path is None and authority is None and scheme is None and port is None and derive is None:
        raise FilterError("changes nothing (set uri, prefixRewrite, authority, scheme or a port)")
    code = spec.get("redirectCode")
    return RedirectFilter(
        status=_status(code if code != 0 else None, ISTIO_REDIRECT_STATUS),
        scheme=scheme,
        hostname=authority,
        port=port,
        derive_port=mode,
        path=path,
    )


def vs_rewrite(spec: Any, raw_matches: Iterable[JSON]) -> RewriteFilter | None:
    """A VirtualService ``http[].rewrite`` (``uri``, ``authority``; ``uriRegexRewrite`` is the
    caller's to warn about); None when it changes nothing ambit applies."""
    if not isinstance(spec, dict):
        raise FilterError("is not an object")
    uri = _string(spec, "uri") or None
    path: PathModifier | None = None
    if uri is not None:
        _prefix_rewrite_allowed(raw_matches, "rewrite.uri", every_prefix=False)
        path = _modifier(PREFIX_REWRITE, uri)
    authority = _host(spec, "authority") if _string(spec, "authority") else None
    rewrite = RewriteFilter(hostname=authority, path=path)
    return rewrite if rewrite != RewriteFilter() else None


def vs_mirror_percent(spec: JSON, field: str, *, legacy: str | None = None) -> float:
    """The percentage of ``spec[field].value`` (else of the integer ``spec[legacy]``), 100 when unset."""
    if field in spec and spec[field] is not None:
        value = _number(mapping(spec, field).get("value", 0.0))
        if value is None or not 0.0 <= value <= 100.0:
            raise FilterError(f"{field}.value is not a number in 0..100")
        return value
    if legacy is not None and spec.get(legacy) is not None:
        percent = _integer(spec[legacy])
        if percent is None or not 0 <= percent <= 100:
            raise FilterError(f"{legacy} {spec[legacy]!r} is not an integer in 0..100")
        return float(percent)
    return 100.0
