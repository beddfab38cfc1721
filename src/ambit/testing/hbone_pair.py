"""Two sans-IO HBONE peers wired back to back in memory, for transcript-style tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from ambit.protocol.hbone import DataReceived, Event, HboneConnection, HboneSettings


@dataclass
class HbonePair:
    """A client and a server `HboneConnection`; `pump()` moves bytes until both are quiet."""

    client: HboneConnection
    server: HboneConnection
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)
    auto_ack: bool = True

    @classmethod
    def create(
        cls,
        client_settings: HboneSettings | None = None,
        server_settings: HboneSettings | None = None,
        clock: object | None = None,
        *,
        auto_ack: bool = True,
    ) -> HbonePair:
        kwargs = {"clock": clock} if clock is not None else {}
        pair = cls(
            HboneConnection(client_side=True, settings=client_settings, **kwargs),  # type: ignore[arg-type]
            HboneConnection(client_side=False, settings=server_settings, **kwargs),  # type: ignore[arg-type]
            auto_ack=auto_ack,
        )
        pair.client.initiate()
        pair.server.initiate()
        pair.pump()
        pair.client_events.clear()
        pair.server_events.clear()
        return pair

    def pump(self, rounds: int = 1000) -> None:
        for _ in range(rounds):
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                return
            if to_server:
                self._deliver(self.server, to_server, self.server_events)
            if to_client:
                self._deliver(self.client, to_client, self.client_events)
        raise AssertionError("peers did not go quiet")

    def _deliver(self, conn: HboneConnection, data: bytes | bytearray, sink: list[Event]) -> None:
        events = conn.receive(data)
        sink.extend(events)
        if self.auto_ack:
            for ev in events:
                if isinstance(ev, DataReceived):
                    conn.acknowledge(ev.stream_id, ev.flow_controlled_length)

    def received(self, side: str, stream_id: int) -> bytes:
        events = self.server_events if side == "server" else self.client_events
        return b"".join(e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id)

    def of_type(self, side: str, kind: type) -> list[Event]:
        events = self.server_events if side == "server" else self.client_events
        return [e for e in events if isinstance(e, kind)]
