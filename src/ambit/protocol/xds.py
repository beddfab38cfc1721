"""Delta xDS session state, sans-IO: versions, nonces, ACK/NACK, and the diff to send.

The incremental ("delta") variant of Envoy's aggregated discovery protocol, one session per resource
type per stream, on both ends. Requests and responses are the small dataclasses below; the gRPC edge
converts them to and from protobuf (`ambit.xds.codec`) and carries the payloads, which this module
never sees: it works on resource names and versions only.

Server side (`ServerSession`), per stream and type:

* the first request subscribes (``"*"`` is the wildcard; an empty first subscription also means
  wildcard, as in Envoy) and may carry ``initial_versions``: what the client already holds, so a
  reconnecting client is sent only what differs. The first request is always answered, even with
  nothing in it: that answer tells the client it is in sync.
* at most one response is outstanding: a new one is computed only after the client ACKed or NACKed
  the previous one, so a burst of changes that arrives meanwhile goes out as one response.
* the server assumes a sent resource was applied; a NACK reverts that for the resources it names
  (all resources of the response when it names none) and records the rejected version, which is not
  sent again: the next push of that resource is its next version. The client keeps its last good one.
* an ACK or NACK whose nonce is not the outstanding one is stale and ignored.

Client side (`ClientSession`), per type: the versions it holds, the initial request of each stream
(wildcard + those versions), and the ACK or NACK of each response given which resources the edge
could not decode. Resources that failed are left at their previous version.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

WILDCARD = "*"
# google.rpc.Code.INVALID_ARGUMENT: what a client sets in error_detail when it rejects resources.
INVALID_ARGUMENT = 3
_MAX_NACK_MESSAGE = 2048


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """Why a client rejected a response (``error_detail``), and which resources it refused."""

    code: int
    message: str
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeltaRequest:
    """One DeltaDiscoveryRequest: a (re)subscription, an ACK (nonce) or a NACK (nonce + error)."""

    type_url: str
    subscribe: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()
    initial_versions: Mapping[str, str] = field(default_factory=dict)
    response_nonce: str = ""
    error: ErrorDetail | None = None
    node_id: str = ""

    @property
    def is_nack(self) -> bool:
        return bool(self.response_nonce) and self.error is not None

    @property
    def is_ack(self) -> bool:
        return bool(self.response_nonce) and self.error is None


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """A resource as the session sees it: its name and version (the payload travels beside it)."""

    name: str
    version: str


@dataclass(frozen=True, slots=True)
class DeltaResponse:
    """One DeltaDiscoveryResponse without payloads."""

    type_url: str
    nonce: str
    resources: tuple[ResourceRef, ...] = ()
    removed: tuple[str, ...] = ()
    system_version: str = ""


# -- server --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Initial:
    """The stream's first request for this type: subscription set up, client versions known."""

    wildcard: bool
    names: tuple[str, ...]
    initial_versions: int


@dataclass(frozen=True, slots=True)
class SubscriptionChanged:
    subscribed: tuple[str, ...]
    unsubscribed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Acked:
    nonce: str
    resources: tuple[ResourceRef, ...]


@dataclass(frozen=True, slots=True)
class Nacked:
    """The client refused (part of) a response; ``resource_names`` are the resources it kept old."""

    nonce: str
    resource_names: tuple[str, ...]
    code: int
    message: str
    named_by_client: bool


@dataclass(frozen=True, slots=True)
class StaleNonce:
    """An ACK/NACK for a response that is not the outstanding one (superseded, or never sent)."""

    nonce: str


ServerEvent = Initial | SubscriptionChanged | Acked | Nacked | StaleNonce


@dataclass(frozen=True, slots=True)
class _Pending:
    nonce: str
    # name -> (version sent, version the client had before, None if it had none)
    sent: Mapping[str, tuple[str, str | None]]
    removed: tuple[str, ...]


class ServerSession:
    """The server's view of one type on one stream; see the module docstring for the rules."""

    def __init__(self, type_url: str, *, nonce_prefix: str = "") -> None:
        self.type_url = type_url
        self._nonce_prefix = nonce_prefix
        self._nonces = 0
        self.started = False
        self.wildcard = False
        self.subscribed: set[str] = set()
        # what the client holds (as far as the server knows): name -> version
        self.client_versions: dict[str, str] = {}
        # versions the client rejected: name -> version (not sent again)
        self.rejected: dict[str, str] = {}
        self._pending: _Pending | None = None
        self._must_respond = False
        # explicitly subscribed names to report as absent (removed) if they do not exist
        self._announce_missing: set[str] = set()
        # the versions mapping the last computed response brought the client to; None when something
        # since (start, subscription change, NACK) needs a full comparison
        self._base: Mapping[str, str] | None = None

    @property
    def pending_nonce(self) -> str | None:
        return self._pending.nonce if self._pending is not None else None

    def on_request(self, request: DeltaRequest) -> tuple[ServerEvent, ...]:
        """Take one request for this type; return what it meant (subscription, ACK, NACK, stale)."""
        if request.type_url != self.type_url:
            raise ValueError(f"request for {request.type_url} given to the {self.type_url} session")
        events: list[ServerEvent] = []
        if not self.started:
            self.started = True
            self._must_respond = True
            names = tuple(n for n in request.subscribe if n != WILDCARD)
            self.wildcard = WILDCARD in request.subscribe or not request.subscribe
            self.subscribed.update(names)
            self._announce_missing.update(names)
            self.client_versions = dict(request.initial_versions)
            self._base = None
            events.append(Initial(self.wildcard, names, len(request.initial_versions)))
        elif request.subscribe or request.unsubscribe:
            added = tuple(n for n in request.subscribe if n != WILDCARD)
            if WILDCARD in request.subscribe:
                self.wildcard = True
            if WILDCARD in request.unsubscribe:
                self.wildcard = False
            removed = tuple(n for n in request.unsubscribe if n != WILDCARD)
            self.subscribed.update(added)
            self._announce_missing.update(added)
            for name in removed:
                self.subscribed.discard(name)
                self._announce_missing.discard(name)
                # the client drops unsubscribed resources itself (Envoy semantics)
                self.client_versions.pop(name, None)
                self.rejected.pop(name, None)
            self._base = None
            events.append(SubscriptionChanged(added, removed))
        if request.response_nonce:
            events.append(self._on_reply(request))
        return tuple(events)

    def _on_reply(self, request: DeltaRequest) -> ServerEvent:
        pending = self._pending
        if pending is None or request.response_nonce != pending.nonce:
            return StaleNonce(request.response_nonce)
        self._pending = None
        if request.error is None:
            for name, (version, _before) in pending.sent.items():
                if self.rejected.get(name) != version:
                    self.rejected.pop(name, None)
            refs = tuple(ResourceRef(name, pending.sent[name][0]) for name in sorted(pending.sent))
            return Acked(pending.nonce, refs)
        self._base = None
        named = tuple(n for n in request.error.resource_names if n in pending.sent)
        refused = named if request.error.resource_names else tuple(sorted(pending.sent))
        for name in refused:
            version, before = pending.sent[name]
            self.rejected[name] = version
            if before is None:
                self.client_versions.pop(name, None)
            else:
                self.client_versions[name] = before
        return Nacked(
            nonce=pending.nonce,
            resource_names=refused,
            code=request.error.code,
            message=request.error.message,
            named_by_client=bool(request.error.resource_names),
        )

    def _wants(self, name: str) -> bool:
        return self.wildcard or name in self.subscribed

    def holds(self, name: str, version: str | None) -> bool:
        """Whether the client has acknowledged holding ``version`` of ``name`` (None: not holding it),
        or does not subscribe to it at all. A response still awaiting its ACK does not count."""
        if not self.started:
            return False
        if not self._wants(name) and name not in self.client_versions:
            return True
        pending = self._pending
        if pending is not None and (name in pending.sent or name in pending.removed):
            return False
        return self.client_versions.get(name) == version

    def next_response(
        self,
        versions: Mapping[str, str],
        *,
        system_version: str = "",
        previous: Mapping[str, str] | None = None,
        changed: Collection[str] = (),
    ) -> DeltaResponse | None:
        """The response that brings the client to ``versions`` (name -> version of every resource of
        this type the server has), or None when there is nothing to send or one is outstanding.

        The client's versions are updated optimistically (a NACK reverts them).

        Optionally, ``changed`` names every resource whose version differs between ``previous`` and
        ``versions`` (added, changed or gone). When the last response this session computed brought
        the client to that very ``previous`` mapping (same object) and nothing happened since that
        needs a full comparison (a new stream, a subscription change, a NACK), only those names are
        compared; when it brought the client to ``versions`` itself, nothing is. The result is the same
        as comparing everything.
        """
        if not self.started or self._pending is not None:
            return None
        base = self._base
        if base is versions:
            return None  # already brought to these versions and nothing changed since
        self._base = versions
        if base is not None and previous is not None and base is previous:
            return self._respond(*self._diff_names(versions, changed), system_version)
        upserts: list[ResourceRef] = []
        sent: dict[str, tuple[str, str | None]] = {}
        for name, version in versions.items():
            self._offer(name, version, upserts, sent)
        for name in [name for name in self.rejected if name not in versions]:
            del self.rejected[name]
        removed = [name for name in self.client_versions if name not in versions]
        removed.extend(
            name for name in self._announce_missing if name not in versions and name not in removed
        )
        self._announce_missing.clear()
        return self._respond(upserts, sent, removed, system_version)

    def _diff_names(
        self, versions: Mapping[str, str], names: Collection[str]
    ) -> tuple[list[ResourceRef], dict[str, tuple[str, str | None]], list[str]]:
        """The full comparison of :meth:`next_response`, restricted to ``names``."""
        upserts: list[ResourceRef] = []
        sent: dict[str, tuple[str, str | None]] = {}
        removed: list[str] = []
        for name in names:
            version = versions.get(name)
            if version is None:
                self.rejected.pop(name, None)
                if name in self.client_versions:
                    removed.append(name)
                continue
            self._offer(name, version, upserts, sent)
        return upserts, sent, removed

    def _offer(
        self,
        name: str,
        version: str,
        upserts: list[ResourceRef],
        sent: dict[str, tuple[str, str | None]],
    ) -> None:
        """Add ``name`` at ``version`` to the response, unless the client does not want it, has it, or
        rejected that version."""
        if not self._wants(name):
            return
        have = self.client_versions.get(name)
        if have == version or self.rejected.get(name) == version:
            return
        upserts.append(ResourceRef(name, version))
        sent[name] = (version, have)

    def _respond(
        self,
        upserts: list[ResourceRef],
        sent: dict[str, tuple[str, str | None]],
        removed: list[str],
        system_version: str,
    ) -> DeltaResponse | None:
        if not upserts and not removed and not self._must_respond:
            return None
        self._must_respond = False
        for ref in upserts:
            self.client_versions[ref.name] = ref.version
        for name in removed:
            self.client_versions.pop(name, None)
            self.rejected.pop(name, None)
        self._nonces += 1
        nonce = f"{self._nonce_prefix}{self._nonces}"
        upserts.sort(key=lambda ref: ref.name)
        removed.sort()
        self._pending = _Pending(nonce, sent, tuple(removed))
        return DeltaResponse(self.type_url, nonce, tuple(upserts), tuple(removed), system_version)


# -- client --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    """What one response means for the client: apply these, drop those, and send ``reply``."""

    accepted: tuple[ResourceRef, ...]
    removed: tuple[str, ...]
    rejected: Mapping[str, str]
    reply: DeltaRequest
    first_on_stream: bool


def nack_message(rejected: Mapping[str, str]) -> str:
    """A NACK's error message naming each rejected resource and why (bounded in length)."""
    parts = [f"{name}: {reason}" for name, reason in sorted(rejected.items())]
    message = f"rejected {len(parts)} resource(s): " + "; ".join(parts)
    if len(message) > _MAX_NACK_MESSAGE:
        message = message[: _MAX_NACK_MESSAGE - 1] + "…"
    return message


class ClientSession:
    """The client's side of one type: versions held, requests to send."""

    def __init__(self, type_url: str, versions: Mapping[str, str] | None = None) -> None:
        self.type_url = type_url
        self.versions: dict[str, str] = dict(versions or {})
        self._responses_on_stream = 0

    def start_stream(self, versions: Mapping[str, str] | None = None, *, node_id: str = "") -> DeltaRequest:
        """The first request of a new stream: wildcard subscription plus the versions held.

        ``versions`` (when given) replaces what the session believes it holds, e.g. from the state
        store that survived a restart.
        """
        if versions is not None:
            self.versions = dict(versions)
        self._responses_on_stream = 0
        return DeltaRequest(
            type_url=self.type_url,
            subscribe=(WILDCARD,),
            initial_versions=dict(self.versions),
            node_id=node_id,
        )

    @property
    def synced_on_stream(self) -> bool:
        """True once the current stream delivered its first response for this type."""
        return self._responses_on_stream > 0

    def on_response(self, response: DeltaResponse, rejected: Mapping[str, str]) -> ClientUpdate:
        """Account for one response; ``rejected`` maps names the edge could not decode to the reason.

        Accepted resources take their new versions, removed ones are dropped, rejected ones keep their
        previous version; the reply is an ACK, or a NACK naming the rejected resources.
        """
        if response.type_url != self.type_url:
            raise ValueError(f"response for {response.type_url} given to the {self.type_url} session")
        first = self._responses_on_stream == 0
        self._responses_on_stream += 1
        accepted = tuple(ref for ref in response.resources if ref.name not in rejected)
        for ref in accepted:
            self.versions[ref.name] = ref.version
        removed = tuple(name for name in response.removed if name not in rejected)
        for name in removed:
            self.versions.pop(name, None)
        if rejected:
            reply = DeltaRequest(
                type_url=self.type_url,
                response_nonce=response.nonce,
                error=ErrorDetail(INVALID_ARGUMENT, nack_message(rejected), tuple(sorted(rejected))),
            )
        else:
            reply = DeltaRequest(type_url=self.type_url, response_nonce=response.nonce)
        return ClientUpdate(accepted, removed, dict(rejected), reply, first)


def versions_of(refs: Iterable[ResourceRef]) -> dict[str, str]:
    return {ref.name: ref.version for ref in refs}
