"""Delta xDS session state, both ends, without sockets: versions, nonces, ACK/NACK, diffs, resume."""

from __future__ import annotations

import pytest

from ambit.protocol.xds import (
    INVALID_ARGUMENT,
    WILDCARD,
    Acked,
    ClientSession,
    DeltaRequest,
    DeltaResponse,
    ErrorDetail,
    Initial,
    Nacked,
    ResourceRef,
    ServerSession,
    StaleNonce,
    SubscriptionChanged,
    nack_message,
    versions_of,
)

T = "type.googleapis.com/ambit.workload.v1.Address"


def started(initial: dict[str, str] | None = None, subscribe: tuple[str, ...] = (WILDCARD,)) -> ServerSession:
    session = ServerSession(T)
    events = session.on_request(DeltaRequest(T, subscribe=subscribe, initial_versions=initial or {}))
    assert isinstance(events[0], Initial)
    return session


def ack(session: ServerSession, response: DeltaResponse) -> None:
    events = session.on_request(DeltaRequest(T, response_nonce=response.nonce))
    assert events == (Acked(response.nonce, response.resources),)


# -- server ------------------------------------------------------------------------------------


def test_nothing_before_the_first_request() -> None:
    assert ServerSession(T).next_response({"wl/a": "1"}) is None


def test_first_response_carries_everything_and_is_sent_even_when_empty() -> None:
    session = started()
    first = session.next_response({"wl/b": "2", "wl/a": "1"}, system_version="sv")
    assert first is not None
    assert first.resources == (ResourceRef("wl/a", "1"), ResourceRef("wl/b", "2"))
    assert first.removed == ()
    assert first.system_version == "sv"

    empty = started()
    response = empty.next_response({})
    assert response is not None and response.resources == () and response.removed == ()


def test_one_response_outstanding_until_acked_and_changes_coalesce() -> None:
    session = started()
    first = session.next_response({"wl/a": "1"})
    assert first is not None
    assert session.pending_nonce == first.nonce
    # changes while the first response is unanswered are held back ...
    assert session.next_response({"wl/a": "2", "wl/b": "1"}) is None
    ack(session, first)
    # ... and go out together, as the latest state
    second = session.next_response({"wl/a": "3", "wl/b": "1"})
    assert second is not None
    assert second.resources == (ResourceRef("wl/a", "3"), ResourceRef("wl/b", "1"))
    assert second.nonce != first.nonce


def test_holds_counts_only_acknowledged_versions_and_removals() -> None:
    session = started()
    assert not ServerSession(T).holds("wl/a", "1")  # no stream yet: nothing confirmed
    first = session.next_response({"wl/a": "1"})
    assert first is not None
    assert not session.holds("wl/a", "1")  # sent, not yet ACKed
    ack(session, first)
    assert session.holds("wl/a", "1") and not session.holds("wl/a", "2") and not session.holds("wl/a", None)
    removal = session.next_response({})
    assert removal is not None and removal.removed == ("wl/a",)
    assert not session.holds("wl/a", None)  # the removal is not ACKed yet
    ack(session, removal)
    assert session.holds("wl/a", None)
    named = started(subscribe=("wl/b",))
    assert named.holds("wl/a", "1")  # not subscribed to it: nothing to wait for


def test_only_changed_resources_are_pushed_and_removals_named() -> None:
    session = started()
    first = session.next_response({"wl/a": "1", "wl/b": "1", "svc/ns/h": "1"})
    assert first is not None
    ack(session, first)
    assert session.next_response({"wl/a": "1", "wl/b": "1", "svc/ns/h": "1"}) is None
    change = session.next_response({"wl/a": "1", "wl/b": "2"})
    assert change is not None
    assert change.resources == (ResourceRef("wl/b", "2"),)
    assert change.removed == ("svc/ns/h",)
    ack(session, change)
    assert session.client_versions == {"wl/a": "1", "wl/b": "2"}


def test_initial_versions_avoid_resending_what_the_client_has() -> None:
    session = started(initial={"wl/a": "1", "wl/b": "old", "wl/gone": "1"})
    response = session.next_response({"wl/a": "1", "wl/b": "2", "wl/c": "1"})
    assert response is not None
    assert response.resources == (ResourceRef("wl/b", "2"), ResourceRef("wl/c", "1"))
    assert response.removed == ("wl/gone",)


def test_reconnect_with_everything_current_gets_an_empty_response() -> None:
    versions = {"wl/a": "1", "wl/b": "1"}
    session = started(initial=versions)
    response = session.next_response(versions)
    assert response is not None
    assert response.resources == () and response.removed == ()
    ack(session, response)
    assert session.next_response(versions) is None


def test_nack_keeps_client_version_and_does_not_resend_the_rejected_version() -> None:
    session = started()
    first = session.next_response({"wl/a": "1", "wl/b": "1"})
    assert first is not None
    ack(session, first)
    bad = session.next_response({"wl/a": "2", "wl/b": "2"})
    assert bad is not None
    events = session.on_request(
        DeltaRequest(
            T,
            response_nonce=bad.nonce,
            error=ErrorDetail(INVALID_ARGUMENT, "wl/a: bad address", ("wl/a",)),
        )
    )
    assert events == (Nacked(bad.nonce, ("wl/a",), INVALID_ARGUMENT, "wl/a: bad address", True),)
    # the client kept wl/a at 1 and applied wl/b at 2
    assert session.client_versions == {"wl/a": "1", "wl/b": "2"}
    assert session.rejected == {"wl/a": "2"}
    # the same bad version is not pushed again ...
    assert session.next_response({"wl/a": "2", "wl/b": "2"}) is None
    # ... the next version is
    fixed = session.next_response({"wl/a": "3", "wl/b": "2"})
    assert fixed is not None and fixed.resources == (ResourceRef("wl/a", "3"),)
    ack(session, fixed)
    assert session.rejected == {}


def test_nack_without_names_reverts_the_whole_response() -> None:
    session = started()
    response = session.next_response({"wl/new": "1"})
    assert response is not None
    (event,) = session.on_request(
        DeltaRequest(T, response_nonce=response.nonce, error=ErrorDetail(13, "broken"))
    )
    assert isinstance(event, Nacked)
    assert event.resource_names == ("wl/new",) and not event.named_by_client
    assert session.client_versions == {}
    assert session.next_response({"wl/new": "1"}) is None


def test_stale_and_unknown_nonces_are_ignored() -> None:
    session = started()
    first = session.next_response({"wl/a": "1"})
    assert first is not None
    assert session.on_request(DeltaRequest(T, response_nonce="nope")) == (StaleNonce("nope"),)
    assert session.pending_nonce == first.nonce
    ack(session, first)
    assert session.on_request(DeltaRequest(T, response_nonce=first.nonce)) == (StaleNonce(first.nonce),)


def test_nonces_are_unique_and_prefixed() -> None:
    session = ServerSession(T, nonce_prefix="7.")
    session.on_request(DeltaRequest(T, subscribe=(WILDCARD,)))
    nonces = []
    for version in range(5):
        response = session.next_response({"wl/a": str(version)})
        assert response is not None
        nonces.append(response.nonce)
        ack(session, response)
    assert len(set(nonces)) == 5
    assert all(nonce.startswith("7.") for nonce in nonces)


def test_empty_first_subscription_means_wildcard() -> None:
    session = started(subscribe=())
    assert session.wildcard
    response = session.next_response({"wl/a": "1"})
    assert response is not None and response.resources == (ResourceRef("wl/a", "1"),)


def test_named_subscriptions_and_unsubscribe() -> None:
    session = started(subscribe=("wl/a", "wl/missing"))
    assert not session.wildcard
    first = session.next_response({"wl/a": "1", "wl/b": "1"})
    assert first is not None
    assert first.resources == (ResourceRef("wl/a", "1"),)
    # a subscribed name that does not exist is reported as removed, once
    assert first.removed == ("wl/missing",)
    ack(session, first)
    events = session.on_request(DeltaRequest(T, subscribe=("wl/b",), unsubscribe=("wl/a",)))
    assert events == (SubscriptionChanged(("wl/b",), ("wl/a",)),)
    second = session.next_response({"wl/a": "2", "wl/b": "1"})
    assert second is not None
    assert second.resources == (ResourceRef("wl/b", "1"),)
    assert second.removed == ()


def test_wildcard_can_be_added_and_removed_later() -> None:
    session = started(subscribe=("wl/a",))
    session.on_request(DeltaRequest(T, subscribe=(WILDCARD,)))
    assert session.wildcard
    session.on_request(DeltaRequest(T, unsubscribe=(WILDCARD,)))
    assert not session.wildcard


def test_initial_versions_only_count_on_the_first_request() -> None:
    session = started(initial={"wl/a": "1"})
    first = session.next_response({"wl/a": "1"})
    assert first is not None
    ack(session, first)
    session.on_request(DeltaRequest(T, initial_versions={"wl/a": "0"}, subscribe=("wl/x",)))
    assert session.client_versions["wl/a"] == "1"


def test_request_for_another_type_is_a_bug() -> None:
    with pytest.raises(ValueError, match="given to the"):
        ServerSession(T).on_request(DeltaRequest("other"))


def test_rejected_version_forgotten_when_the_resource_disappears() -> None:
    session = started()
    response = session.next_response({"wl/a": "1"})
    assert response is not None
    session.on_request(DeltaRequest(T, response_nonce=response.nonce, error=ErrorDetail(3, "bad", ("wl/a",))))
    assert session.next_response({}) is None
    assert session.rejected == {}
    again = session.next_response({"wl/a": "1"})
    assert again is not None and again.resources == (ResourceRef("wl/a", "1"),)


# -- client ------------------------------------------------------------------------------------


def test_client_start_stream_sends_wildcard_and_versions() -> None:
    client = ClientSession(T, {"wl/a": "1"})
    request = client.start_stream(node_id="node-1")
    assert request.subscribe == (WILDCARD,)
    assert request.initial_versions == {"wl/a": "1"}
    assert request.node_id == "node-1"
    assert not request.is_ack and not request.is_nack
    # versions from the store replace what the session believed
    assert client.start_stream({"wl/b": "2"}).initial_versions == {"wl/b": "2"}


def test_client_acks_and_tracks_versions() -> None:
    client = ClientSession(T)
    client.start_stream()
    assert not client.synced_on_stream
    update = client.on_response(
        DeltaResponse(T, "n1", (ResourceRef("wl/a", "1"), ResourceRef("wl/b", "1")), ()), {}
    )
    assert update.first_on_stream
    assert update.reply == DeltaRequest(T, response_nonce="n1")
    assert update.reply.is_ack
    assert client.versions == {"wl/a": "1", "wl/b": "1"}
    update = client.on_response(DeltaResponse(T, "n2", (), ("wl/a", "wl/unknown")), {})
    assert not update.first_on_stream
    assert update.removed == ("wl/a", "wl/unknown")
    assert client.versions == {"wl/b": "1"}
    assert client.synced_on_stream


def test_client_nack_names_rejected_resources_and_keeps_their_old_versions() -> None:
    client = ClientSession(T, {"wl/a": "1"})
    client.start_stream()
    update = client.on_response(
        DeltaResponse(T, "n1", (ResourceRef("wl/a", "2"), ResourceRef("wl/b", "1")), ()),
        {"wl/a": "address 0 has 5 bytes"},
    )
    assert update.reply.is_nack
    assert update.reply.response_nonce == "n1"
    assert update.reply.error is not None
    assert update.reply.error.resource_names == ("wl/a",)
    assert "wl/a: address 0 has 5 bytes" in update.reply.error.message
    assert update.accepted == (ResourceRef("wl/b", "1"),)
    assert client.versions == {"wl/a": "1", "wl/b": "1"}


def test_client_and_server_converge() -> None:
    """A whole exchange, both ends in memory, including a NACK and a reconnect."""
    client = ClientSession(T)
    server = ServerSession(T)
    state = {"wl/a": "1", "wl/b": "1"}

    def exchange(rejected: dict[str, str] | None = None) -> DeltaResponse | None:
        response = server.next_response(state)
        if response is not None:
            update = client.on_response(response, rejected or {})
            server.on_request(update.reply)
        return response

    server.on_request(client.start_stream())
    exchange()
    assert client.versions == state
    state = {"wl/a": "2", "wl/b": "1", "wl/c": "1"}
    exchange(rejected={"wl/c": "bad"})
    assert client.versions == {"wl/a": "2", "wl/b": "1"}
    # reconnect: a new server session learns the client's versions; only wl/c is sent again
    server = ServerSession(T)
    server.on_request(client.start_stream())
    response = exchange()
    assert response is not None
    assert response.resources == (ResourceRef("wl/c", "1"),)
    assert client.versions == state


def test_nack_message_is_bounded() -> None:
    message = nack_message({f"wl/{i}": "x" * 100 for i in range(100)})
    assert len(message) <= 2048
    assert message.startswith("rejected 100 resource(s): wl/0: ")


def test_versions_of() -> None:
    assert versions_of([ResourceRef("a", "1"), ResourceRef("b", "2")]) == {"a": "1", "b": "2"}
