"""Request path normalisation, as Envoy does it for Istio before authorization and forwarding.

Pure: stdlib only, no I/O. The waypoint normalises the path of every request once, then evaluates L7
AuthorizationPolicy ``paths`` against the result AND forwards the result upstream, so the policy and the
application see the same path. A path that cannot be normalised is refused with ``400``
(:class:`PathError`).

Where the rules come from
-------------------------
* Istio's ``meshConfig.pathNormalization.normalization`` (default ``BASE``) is turned by pilot's
  ``buildHTTPConnectionManager`` (also used for waypoints, ``isWaypoint: true``) into Envoy
  ``HttpConnectionManager`` fields: ``NONE`` → ``normalize_path: false``; ``BASE`` → ``normalize_path:
  true``; ``MERGE_SLASHES`` → also ``merge_slashes: true``; ``DECODE_AND_MERGE_SLASHES`` → also
  ``path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD``; every other level sets that action to
  ``KEEP_UNCHANGED``.
* Istio, "Authorization Policy Normalization" (istio.io/latest/docs/reference/config/security/
  normalization): ``%00`` is always 400; ``%2d %2e %30-%39 %41-%5a %5f %61-%7a %7e`` are decoded under
  ``BASE``, ``%2f``/``%5c`` only under ``DECODE_AND_MERGE_SLASHES``, once (no double decoding); ``\\`` →
  ``/`` under ``BASE``; ``//`` merged only from ``MERGE_SLASHES`` on; ``/./`` and ``/../`` resolved per
  RFC 3986 under ``BASE``. The normalised request is used "for both the evaluation of authorization
  policies and the request that is ultimately sent to the backend server".
* Istio, "Security Best Practices" (the normalisation table): ``BASE`` and ``NONE`` are "vulnerable to
  CVE-2021-31920" (``//`` and ``%2F`` spellings), ``MERGE_SLASHES`` is the update "to mitigate
  CVE-2021-31920", ``DECODE_AND_MERGE_SLASHES`` is the strictest and recommended "with the caveat that
  you must thoroughly test", since it "has the potential to break applications". Order: decode
  ``%2F %2f %5C %5c``, then Envoy's ``normalize_path``, then merge slashes.
* Envoy ``ConnectionManagerUtility::maybeNormalizePath``: a ``#`` anywhere in ``:path`` → reject
  (``http_reject_path_with_fragment``, on since 1.19.1 / CVE-2021-32779); unescape slashes (only
  before ``?``); ``PathUtil::canonicalPath`` (fails → ``Reject`` → 400 ``path_normalization_failed``);
  then ``mergeSlashes``. The query is never touched.
* ``PathUtil::canonicalPath`` is Chromium's ``url::CanonicalizePath`` (``url_canon_path.cc``) on the
  part before ``?``: ``%2e``/``%2E`` counts as ``.`` when finding dot segments (``IsDot``); a ``..``
  above the root is dropped, not an error (``BackUpToPreviousSlash``); ``\\`` becomes ``/``; an escape
  of an unreserved character is decoded (``UNESCAPE`` in ``kPathCharLookup``), any other valid escape is
  kept; a NUL, raw or as ``%00``, fails the canonicalisation; ``" # < > ? ^ ` { | }``, controls, space,
  DEL and bytes >= 0x80 are percent-encoded.

The rules of :func:`normalize_path`, in order
----------------------------------------------
1. ``*`` (the ``OPTIONS *`` target) is returned as is. Anything else must start with ``/``.
2. Each character, left to right:

   * ``%HH`` (two hex digits, either case): ``%00`` → :class:`PathError`; an unreserved character
     (``ALPHA DIGIT - . _ ~``, RFC 3986 §2.3) → that character (so ``%2E`` takes part in dot segments,
     as Chromium's ``IsDot``); ``%2F``/``%5C`` → ``/`` when ``decode_slashes`` (``\\`` becomes ``/``
     too); anything else stays encoded with UPPERCASE hex digits (RFC 3986 §2.1, §6.2.2.1);
   * ``%`` not followed by two hex digits → :class:`PathError`;
   * ``\\`` → ``/``;
   * ``" < > ^ ` { | }`` → ``%22 %3C %3E %5E %60 %7B %7C %7D`` (Chromium escapes them too);
   * ``#`` (a fragment), ``?`` (the caller must split the query off first), a control character, space,
     DEL or anything outside ASCII → :class:`PathError`;
   * every other character (``A-Z a-z 0-9 - . _ ~ ! $ & ' ( ) * + , ; = : @ / [ ]``) is kept.

   Decoding happens once: a decoded character is never ``%``, so ``%252e`` stays ``%252e``.
3. RFC 3986 §5.2.4 ``remove_dot_segments`` on the ``/``-separated segments: ``.`` is dropped, ``..``
   drops the segment before it (never above the root: ``/../a`` → ``/a``); a final ``.`` or ``..``
   leaves a trailing ``/``. An empty segment is a segment: ``/a//../b`` → ``/a/b`` (Istio's own tests).
4. With ``merge_slashes``: runs of ``/`` become one (``//admin`` → ``/admin``), after step 3 as in
   Envoy, so ``/a//../b`` is ``/a/b`` there too.

The result is idempotent: normalising it again returns it unchanged.

Deliberate differences from Envoy
---------------------------------
* Malformed escapes (``%zz``, ``%4``, a trailing ``%``) are refused (400); Chromium copies them through
  (its "permissive behavior"), which leaves a spelling that later decoders may each read differently.
* Non-ASCII characters are refused; Envoy percent-encodes bytes >= 0x80. ambit's HTTP/1 parser (llhttp,
  strict) already refuses them in the request line, so HTTP/2 is refused alike.
* The hex digits of the escapes kept are uppercased; Envoy keeps the case received. ``%2f`` and ``%2F``
  are the same octet (RFC 3986 §6.2.2.1), and one spelling leaves a policy one thing to match.
* Merging ``//`` gives ``/``; Envoy's ``mergeSlashes`` keeps an all-slash path such as ``//``.

The waypoint's choice: :data:`WAYPOINT_NORMALIZATION` is :data:`MERGE_SLASHES`, stricter than Istio's
``BASE`` default. Under ``BASE``, ``//admin`` stays ``//admin``, so a DENY on ``/admin`` does not match
it while most servers serve ``/admin``: the CVE-2021-31920 bypass that Istio's own best-practices page
says ``BASE`` is open to and that ``MERGE_SLASHES`` closes. ``%2F``/``%5C`` stay encoded (no
``DECODE_AND_MERGE_SLASHES``): decoding them changes what a path means to applications that carry an
encoded slash inside a segment (``/files/a%2Fb``), which is the breakage Istio warns about. A DENY on a
path can therefore still be sidestepped with ``%2F`` against an application that decodes it; prefer
ALLOW lists for paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "BASE",
    "DECODE_AND_MERGE_SLASHES",
    "MERGE_SLASHES",
    "WAYPOINT_NORMALIZATION",
    "PathError",
    "PathNormalization",
    "normalize_path",
    "normalize_target",
]

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
# characters Chromium's canonicaliser percent-encodes rather than passing through
_ESCAPED = {c: f"%{ord(c):02X}" for c in '"<>^`{|}'}
# kept as they are (RFC 3986 pchar without pct-encoded, plus "/", "[" and "]" that Chromium passes)
_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/[]")
# a path with only kept characters and no segment starting with "." needs no work at all
_PLAIN = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/\[\]]*")


class PathError(ValueError):
    """A request path that must be refused with 400; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _decode(raw: str, decode_slashes: bool) -> str:
    """Step 2 of the module docstring: escapes, backslashes and the characters checked one by one."""
    out: list[str] = []
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == "%":
            hex_digits = raw[i + 1 : i + 3]
            if len(hex_digits) != 2 or hex_digits[0] not in _HEX or hex_digits[1] not in _HEX:
                raise PathError(f"malformed percent-encoding at offset {i}")
            decoded = chr(int(hex_digits, 16))
            if decoded == "\x00":
                raise PathError("%00 in path")
            if decoded in _UNRESERVED:
                out.append(decoded)
            elif decode_slashes and decoded in "/\\":
                out.append("/")
            else:
                out.append("%" + hex_digits.upper())
            i += 3
            continue
        if c in _KEPT:
            out.append(c)
        elif c == "\\":
            out.append("/")
        elif c in _ESCAPED:
            out.append(_ESCAPED[c])
        elif c == "#":
            raise PathError("fragment (#) in path")
        elif c == "?":
            raise PathError("query (?) in path: split it off first")
        elif c > "\x7f":
            raise PathError(f"non-ASCII character at offset {i}")
        else:
            raise PathError(f"control character or space at offset {i}")
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on an absolute path (starts with ``/``), segment by segment."""
    segments = path.split("/")[1:]
    out: list[str] = []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
            continue
        if index == last:  # a final "." or ".." leaves a trailing slash
            out.append("")
    return "/" + "/".join(out)


def _merge_slashes(path: str) -> str:
    if "//" not in path:
        return path
    inner = "/".join(segment for segment in path.split("/") if segment)
    if not inner:
        return "/"
    return "/" + inner + ("/" if path.endswith("/") else "")


def normalize_path(raw: str, *, merge_slashes: bool = False, decode_slashes: bool = False) -> str:
    """The normalised form of a request path WITHOUT its query (see the module docstring).

    Both flags off is Istio's ``BASE``; ``merge_slashes`` is ``MERGE_SLASHES``; both on is
    ``DECODE_AND_MERGE_SLASHES``. :class:`PathError` for a path to refuse with 400.
    """
    if raw == "*":
        return raw
    if not raw.startswith("/"):
        raise PathError("path does not start with '/'")
    if _PLAIN.fullmatch(raw) and "/." not in raw:
        path = raw
    else:
        path = _remove_dot_segments(_decode(raw, decode_slashes))
    return _merge_slashes(path) if merge_slashes else path


@dataclass(frozen=True, slots=True)
class PathNormalization:
    """One of Istio's ``pathNormalization`` levels (no ``NONE``: the waypoint always normalises)."""

    merge_slashes: bool
    decode_slashes: bool

    def normalize(self, raw: str) -> str:
        return normalize_path(raw, merge_slashes=self.merge_slashes, decode_slashes=self.decode_slashes)


BASE = PathNormalization(merge_slashes=False, decode_slashes=False)
MERGE_SLASHES = PathNormalization(merge_slashes=True, decode_slashes=False)
DECODE_AND_MERGE_SLASHES = PathNormalization(merge_slashes=True, decode_slashes=True)
# the waypoint's level: MERGE_SLASHES, stricter than Istio's BASE default (see the module docstring)
WAYPOINT_NORMALIZATION = MERGE_SLASHES


def normalize_target(target: str, normalization: PathNormalization = WAYPOINT_NORMALIZATION) -> str:
    """An origin-form request target (``/p?q``, or ``*``) with its path normalised and its query unchanged.

    A ``#`` anywhere is refused, as Envoy does since CVE-2021-32779 (a client never sends a fragment:
    RFC 9112 §3.2, RFC 9113 §8.3.1).
    """
    if "#" in target:
        raise PathError("fragment (#) in request target")
    path, sep, query = target.partition("?")
    return normalization.normalize(path) + sep + query
