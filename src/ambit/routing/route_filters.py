"""What a route rule's redirect, rewrite and mirrors do to one request (pure).

The waypoint calls these after :meth:`ambit.routing.http_routes.RouteTable.select`; ``matched`` is the
path condition of the match that matched (``Selected.match.path``), which a prefix replacement needs.
``path_and_query`` is the request target as the waypoint forwards it (normalised path, ``?``, the
query as sent); the query is kept by every function here.

**Redirect** (:func:`redirect_location`; Gateway API ``HTTPRequestRedirectFilter``, Istio
``HTTPRedirect``): the rule answers ``redirect.status`` with ``Location: <the URL>`` and sends nothing
upstream. The URL: the redirect's scheme, else the request's; its hostname, else the request's host
without its port; the path changed by ``redirect.path`` (:func:`rewrite_path`), else the request's;
the query as sent; and the port (``redirect.port``, else by ``redirect.derive_port``):

* ``ListenerPort``: the port the request addressed (for a GAMMA route the Service port: the Gateway
  API's "Gateway Listener port" when the redirect names no scheme, Istio's ``FROM_REQUEST_PORT``);
* ``SchemeDefault``: 80 for ``http``, 443 for ``https`` (the Gateway API's rule when the redirect
  names a scheme, Istio's ``FROM_PROTOCOL_DEFAULT``);
* ``RequestHost``: the port written in the host the Location keeps (the redirect's hostname, else the
  request's ``Host``), dropped when the redirect changes the scheme and the port is the request
  scheme's default (Envoy's behaviour when a VirtualService sets neither ``port`` nor ``derivePort``).

A port that is the Location scheme's default (``http`` and 80, ``https`` and 443) is never written
("Implementations SHOULD NOT add the port number in the 'Location' header" in those cases).

**Path modifiers** (:func:`rewrite_path`): ``ReplaceFullPath`` gives its value. ``ReplacePrefixMatch``
(Gateway API) replaces the segments the ``PathPrefix`` match matched, trailing ``/`` ignored on both
sides, and never leaves an empty path (the spec's table: ``/foo/bar`` with prefix ``/foo`` and
replacement ``/xyz`` or ``/xyz/`` → ``/xyz/bar``; ``/foo/`` → ``/xyz/``; ``/foo`` → ``/xyz``; with
``""`` or ``/``: ``/foo/bar`` → ``/bar``, ``/foo`` and ``/foo/`` → ``/``); with another kind of match
(translation never sends one) the whole path is replaced. ``PrefixRewrite`` (Envoy's
``prefix_rewrite``, Istio's VirtualService ``rewrite.uri`` and ``redirect.prefixRewrite``) replaces
the characters a prefix match (``StringPrefix``, ``PathPrefix``) matched, the leading ``/`` when the
match has no path condition (Istio gives such a route Envoy's prefix ``/``), else (an exact or a
regular-expression match) the whole path: ``/foo`` replaced by ``/`` turns ``/foo/bar`` into
``//bar``, as Istio documents.

**Rewrite** (:func:`rewrite_target`, :func:`rewritten_authority`; Gateway API ``HTTPURLRewriteFilter``,
Istio ``HTTPRewrite``): applied to the request sent to the backend, after the backend is chosen and
before the request goes out (each retry sends the rewritten request). The hostname replaces the whole
``Host`` / ``:authority``.

**Mirrors** (:func:`mirrors_drawn`; Gateway API ``HTTPRequestMirrorFilter``, Istio ``mirror`` /
``mirrors``): each mirror of the rule is drawn independently with its percentage (as each of Envoy's
``request_mirror_policies`` has its own ``runtime_fraction``); a rule with a redirect mirrors nothing
(Envoy's redirect routes have no route action). The copy is the request as sent to the primary
(headers modified and rewritten), sent fire and forget to one endpoint of the mirror's backend; its
answer is read and dropped, never retried, and never reaches the client.

**The mirrored request's host.** Envoy appends ``-shadow`` to the host of every mirrored request
(``source/common/router/shadow_writer_impl.cc``, ``shadowAppendedHost``: before the port, so
``reviews:9080`` becomes ``reviews-shadow:9080``) unless the mirror policy sets
``disable_shadow_host_suffix_append``. Istio sets that field from ``DISABLE_SHADOW_HOST_SUFFIX``
(``pilot/pkg/features/pilot.go``), which defaults to **true** since Istio 1.28 (istio/istio#57708;
the compatibility profiles for 1.25-1.27 set it false, the older behaviour): current Istio sends the
host unchanged. :data:`ISTIO_SHADOW_HOST_SUFFIX` records that default; :func:`shadow_authority` is
Envoy's rule, for a waypoint that wants the older behaviour.
"""

from __future__ import annotations

import random

from ambit.model.route import (
    PATH_PREFIX,
    PATH_STRING_PREFIX,
    PORT_FROM_HOST,
    PORT_FROM_LISTENER,
    PORT_FROM_SCHEME,
    REPLACE_FULL_PATH,
    REPLACE_PREFIX_MATCH,
    BackendRef,
    PathMatch,
    PathModifier,
    RedirectFilter,
    RewriteFilter,
    RouteRule,
)

__all__ = [
    "DEFAULT_PORTS",
    "ISTIO_SHADOW_HOST_SUFFIX",
    "mirrors_drawn",
    "redirect_location",
    "rewrite_path",
    "rewrite_target",
    "rewritten_authority",
    "shadow_authority",
    "split_host",
]

DEFAULT_PORTS = {"http": 80, "https": 443}
SHADOW_SUFFIX = "-shadow"
# Istio's DISABLE_SHADOW_HOST_SUFFIX defaults to true since 1.28: mirrored requests keep their host.
ISTIO_SHADOW_HOST_SUFFIX = False


def split_host(authority: str) -> tuple[str, int | None]:
    """(host, port) of a ``Host`` / ``:authority`` value; an IPv6 address keeps (or gets) its brackets,
    a port that is not a number in 0..65535 counts as none."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return authority, None
        host, rest = authority[: end + 1], authority[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else None
    elif authority.count(":") > 1:
        return f"[{authority}]", None  # a bare IPv6 address
    else:
        host, colon, port_text_found = authority.partition(":")
        port_text = port_text_found if colon else None
    if port_text is None or not port_text.isdigit() or int(port_text) > 65535:
        return host, None
    return host, int(port_text)


def rewrite_path(modifier: PathModifier, matched: PathMatch | None, path: str) -> str:
    """``path`` (without the query) as ``modifier`` changes it; ``matched`` is the path condition of the
    match that selected the rule (module docstring)."""
    if modifier.kind == REPLACE_FULL_PATH:
        return modifier.value
    if modifier.kind == REPLACE_PREFIX_MATCH:
        rest = ""  # no PathPrefix match: the whole path is replaced
        if matched is not None and matched.kind == PATH_PREFIX:
            prefix = matched.value.rstrip("/")
            if path == prefix or path.startswith(prefix + "/"):
                rest = path[len(prefix) :]
        return modifier.value.rstrip("/") + rest or "/"
    # PREFIX_REWRITE: Envoy's prefix_rewrite. No path condition: Istio's route matched the prefix "/".
    if matched is None:
        literal: str | None = "/"
    else:
        literal = matched.value if matched.kind in (PATH_PREFIX, PATH_STRING_PREFIX) else None
    if literal is not None and path.startswith(literal):
        return modifier.value + path[len(literal) :]
    return modifier.value


def rewrite_target(rewrite: RewriteFilter, *, matched: PathMatch | None, path_and_query: str) -> str:
    """The request target (path and query) to send to the backend."""
    if rewrite.path is None:
        return path_and_query
    path, mark, query = path_and_query.partition("?")
    return rewrite_path(rewrite.path, matched, path) + mark + query


def rewritten_authority(rewrite: RewriteFilter, authority: str) -> str:
    """The ``Host`` / ``:authority`` to send to the backend: the rewrite's hostname, else unchanged."""
    return rewrite.hostname if rewrite.hostname is not None else authority


def redirect_location(
    redirect: RedirectFilter,
    *,
    matched: PathMatch | None,
    scheme: str,
    host: str,
    port: int,
    path_and_query: str,
) -> str:
    """The ``Location`` of ``redirect`` for a request with ``scheme`` (``http`` at the waypoint),
    ``host`` (its ``Host`` / ``:authority``, a port in it allowed), addressed to ``port`` (the Service
    port) with ``path_and_query``; answer ``redirect.status`` with it (module docstring)."""
    final_scheme = redirect.scheme or scheme
    path, mark, query = path_and_query.partition("?")
    if redirect.path is not None:
        path = rewrite_path(redirect.path, matched, path)
    name, written = split_host(redirect.hostname if redirect.hostname is not None else host)
    chosen: int | None
    if redirect.port is not None:
        chosen = redirect.port
    elif redirect.derive_port == PORT_FROM_LISTENER:
        chosen = port
    elif redirect.derive_port == PORT_FROM_SCHEME:
        chosen = DEFAULT_PORTS.get(final_scheme)
    else:  # PORT_FROM_HOST: Envoy keeps the host's port, unless the scheme changes away from its default
        assert redirect.derive_port == PORT_FROM_HOST
        chosen = written
        if redirect.hostname is None and final_scheme != scheme and written == DEFAULT_PORTS.get(scheme):
            chosen = None
    if chosen is not None and chosen == DEFAULT_PORTS.get(final_scheme):
        chosen = None
    authority = name if chosen is None else f"{name}:{chosen}"
    return f"{final_scheme}://{authority}{path}{mark}{query}"


def _drawn(percent: float, rng: random.Random) -> bool:
    """True with probability ``percent`` % (exactly never at 0, always at 100)."""
    return rng.random() * 100.0 < percent


def mirrors_drawn(rule: RouteRule, rng: random.Random) -> list[BackendRef]:
    """The backends this request is mirrored to, each drawn independently with its percentage, in the
    rule's order; none for a rule that redirects."""
    if rule.redirect is not None:
        return []
    return [mirror.backend for mirror in rule.mirrors if _drawn(mirror.percent, rng)]


def shadow_authority(authority: str) -> str:
    """Envoy's ``-shadow`` suffix on a mirrored request's host, before the port: ``reviews:9080`` →
    ``reviews-shadow:9080``, ``[::1]:80`` → ``[::1]-shadow:80`` (``shadowAppendedHost``). Current Istio
    does not use it by default (:data:`ISTIO_SHADOW_HOST_SUFFIX`)."""
    colon = authority.rfind(":")
    bracket = authority.rfind("]")
    if colon < 0 or (bracket >= 0 and colon < bracket):
        return authority + SHADOW_SUFFIX
    return authority[:colon] + SHADOW_SUFFIX + authority[colon:]
