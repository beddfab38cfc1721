"""Shared by the codec tests: a resource packed as it travels, and a proxy's state after its sessions took
a control-plane cache's resources over the wire bytes."""

from __future__ import annotations

from google.protobuf import message  # type: ignore[import-untyped]  # no types-protobuf

from ambit.control.cache import SnapshotCache, Value
from ambit.protocol.xds import ClientSession, ServerSession
from ambit.state import StateStore
from ambit.xds import codec
from ambit.xds.pb.discovery.v1 import discovery_pb2


def packed(pb: message.Message, name: str) -> discovery_pb2.Resource:
    """``pb`` as a discovery ``Resource`` named ``name`` (version ``v1``)."""
    resource = discovery_pb2.Resource(name=name, version="v1")
    resource.resource.Pack(pb)
    return resource


def proxy_state(resources: dict[str, tuple[str, Value]]) -> tuple[StateStore, list[str]]:
    """Serve ``resources`` from a control-plane cache to a proxy's sessions and store, type by type, over
    the wire bytes; return the store and every NACK message."""
    cache = SnapshotCache()
    cache.set(resources)
    snapshot = cache.current
    store = StateStore()
    nacks: list[str] = []
    for type_url in codec.TYPE_URLS:
        server = ServerSession(type_url)
        client = ClientSession(type_url)
        server.on_request(client.start_stream())
        response = server.next_response(snapshot.versions(type_url))
        assert response is not None, f"the first response of {type_url} is always sent"
        pb = codec.response_to_pb(response, snapshot.wire(type_url, (r.name for r in response.resources)))
        wire = discovery_pb2.DeltaDiscoveryResponse.FromString(pb.SerializeToString())
        envelope, decoded, rejected = codec.decode_response(wire)
        update = client.on_response(envelope, rejected)
        store.apply({ref.name: decoded[ref.name] for ref in update.accepted}, update.removed)
        if update.reply.error is not None:
            nacks.append(update.reply.error.message)
        assert client.synced_on_stream
    return store, nacks
