"""SPIFFE identities: the workload identity and the node identity, with their parsing rules.

This module owns the string form of every identity in ambit:

* workload identity ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``;
* node identity ``spiffe://<trust-domain>/node/<node-name>`` (held only by ztunnels, never issued by
  the CA service).

Parsing follows the SPIFFE ID specification strictly (lowercase scheme, trust domain of lowercase
letters, digits, ``.``, ``-`` and ``_`` only, no port or userinfo, path segments of
``[A-Za-z0-9._-]`` that are neither empty nor ``.`` / ``..``, no percent-encoding, query or fragment,
at most 2048 bytes) plus ambit's own rule that the path is exactly ``ns/<x>/sa/<y>`` or
``node/<x>``. Every rejection raises :class:`IdentityError` whose message says what is wrong.
Pure: stdlib only, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_TRUST_DOMAIN = "cluster.local"
SCHEME = "spiffe://"
MAX_ID_BYTES = 2048
MAX_TRUST_DOMAIN_CHARS = 255

_TRUST_DOMAIN_CHARS = re.compile(r"[a-z0-9._-]+")
_SEGMENT_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_SHOWN_CHARS = 80


class IdentityError(ValueError):
    """A string or value is not a valid ambit SPIFFE identity; the message says why."""


def _shown(uri: str) -> str:
    """A short, printable rendering of a rejected input for error messages."""
    if len(uri) > _SHOWN_CHARS:
        return repr(uri[:_SHOWN_CHARS] + "…")
    return repr(uri)


def check_trust_domain(trust_domain: str) -> str:
    """Return ``trust_domain`` if it is a valid SPIFFE trust domain name, else raise IdentityError."""
    if not trust_domain:
        raise IdentityError("trust domain is empty")
    if len(trust_domain) > MAX_TRUST_DOMAIN_CHARS:
        raise IdentityError(
            f"trust domain is {len(trust_domain)} characters long, the maximum is {MAX_TRUST_DOMAIN_CHARS}"
        )
    if "@" in trust_domain:
        raise IdentityError(
            f"trust domain {_shown(trust_domain)} contains userinfo ('@'), which is not allowed"
        )
    if ":" in trust_domain:
        raise IdentityError(
            f"trust domain {_shown(trust_domain)} contains a port (':'), which is not allowed"
        )
    if not _TRUST_DOMAIN_CHARS.fullmatch(trust_domain):
        raise IdentityError(
            f"trust domain {_shown(trust_domain)} may contain only lowercase letters, digits, "
            "'.', '-' and '_'"
        )
    return trust_domain


def check_segment(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid SPIFFE path segment (named ``kind`` in errors), else raise."""
    if not value:
        raise IdentityError(f"{kind} is empty")
    if value in (".", ".."):
        raise IdentityError(f"{kind} must not be {value!r} (dot segments are not allowed)")
    if not _SEGMENT_CHARS.fullmatch(value):
        raise IdentityError(f"{kind} {_shown(value)} may contain only letters, digits, '.', '-' and '_'")
    return value


def _check_length(uri: str) -> None:
    size = len(uri.encode("utf-8", "surrogatepass"))
    if size > MAX_ID_BYTES:
        raise IdentityError(f"SPIFFE ID is {size} bytes long, the maximum is {MAX_ID_BYTES}")


@dataclass(frozen=True, slots=True)
class Identity:
    """A workload identity: ``spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>``."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        check_segment("namespace", self.namespace)
        check_segment("service account", self.service_account)
        _check_length(str(self))

    @classmethod
    def parse(cls, uri: str) -> Identity:
        """Parse a workload SPIFFE ID; raise IdentityError (with the reason) for anything else."""
        parsed = parse_spiffe_id(uri)
        if not isinstance(parsed, Identity):
            raise IdentityError(f"{_shown(uri)} is a node identity, expected a workload identity")
        return parsed

    def __str__(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """A node identity (a ztunnel's credential): ``spiffe://<trust_domain>/node/<node>``."""

    trust_domain: str
    node: str

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        check_segment("node name", self.node)
        _check_length(str(self))

    @classmethod
    def parse(cls, uri: str) -> NodeIdentity:
        """Parse a node SPIFFE ID; raise IdentityError (with the reason) for anything else."""
        parsed = parse_spiffe_id(uri)
        if not isinstance(parsed, NodeIdentity):
            raise IdentityError(f"{_shown(uri)} is a workload identity, expected a node identity")
        return parsed

    def __str__(self) -> str:
        return f"{SCHEME}{self.trust_domain}/node/{self.node}"


def parse_spiffe_id(uri: str) -> Identity | NodeIdentity:
    """Parse a SPIFFE ID into a workload or node identity; raise IdentityError with the reason."""
    if not isinstance(uri, str):
        raise IdentityError(f"SPIFFE ID must be a string, got {type(uri).__name__}")
    _check_length(uri)
    for char in uri:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            what = "a NUL byte" if char == "\0" else f"control character {char!r}"
            raise IdentityError(f"SPIFFE ID {_shown(uri)} contains {what}")
    if not uri.startswith(SCHEME):
        if uri[: len(SCHEME)].lower() == SCHEME:
            raise IdentityError(f"SPIFFE ID {_shown(uri)} must start with lowercase 'spiffe://'")
        raise IdentityError(f"SPIFFE ID {_shown(uri)} must start with 'spiffe://'")
    if "%" in uri:
        raise IdentityError(f"SPIFFE ID {_shown(uri)} contains percent-encoding ('%'), which is not allowed")
    if "?" in uri:
        raise IdentityError(f"SPIFFE ID {_shown(uri)} contains a query ('?'), which is not allowed")
    if "#" in uri:
        raise IdentityError(f"SPIFFE ID {_shown(uri)} contains a fragment ('#'), which is not allowed")

    rest = uri[len(SCHEME) :]
    trust_domain, slash, path = rest.partition("/")
    check_trust_domain(trust_domain)
    if not slash or not path:
        raise IdentityError(
            f"SPIFFE ID {_shown(uri)} has no path; expected /ns/<namespace>/sa/<sa> or /node/<name>"
        )
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if not segment:
            where = "a trailing '/'" if index == len(segments) - 1 else "an empty path segment ('//')"
            raise IdentityError(f"SPIFFE ID {_shown(uri)} has {where}")
        check_segment(f"path segment {index + 1}", segment)

    if len(segments) == 4 and segments[0] == "ns" and segments[2] == "sa":
        return Identity(trust_domain, segments[1], segments[3])
    if len(segments) == 2 and segments[0] == "node":
        return NodeIdentity(trust_domain, segments[1])
    raise IdentityError(
        f"SPIFFE ID {_shown(uri)} has path '/{path[:_SHOWN_CHARS]}'; "
        "expected exactly /ns/<namespace>/sa/<service-account> or /node/<node-name>"
    )
