"""The proxy cache: its codecs and unreadable files (no I/O beyond tmp_path)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from ambit.model.identity import Identity
from ambit.model.workload import TunnelProtocol, Workload
from ambit.proxy.cache import ProxyCache, decode_certs, decode_state, encode_certs, encode_state
from ambit.state.snapshot import resource_name
from ambit.testing.pki import Pki

WL = Workload(
    uid="u1",
    name="web-0",
    namespace="default",
    service_account="web",
    node="node1",
    addresses=("10.244.1.2",),
    tunnel_protocol=TunnelProtocol.HBONE,
)


def test_state_round_trips_through_wire_bytes() -> None:
    entries = {resource_name(WL): ("v1", WL)}
    assert decode_state(encode_state(entries)) == entries


def test_certs_round_trip_and_expired_ones_are_not_loaded() -> None:
    pki = Pki()
    good = pki.workload("default", "web")
    old = pki.workload(
        "default", "old", ttl=timedelta(hours=1), not_before=datetime.now(UTC) - timedelta(hours=2)
    )
    data = encode_certs({good.identity: good, old.identity: old})  # type: ignore[dict-item]
    loaded = decode_certs(data, datetime.now(UTC))
    assert [c.identity for c in loaded] == [Identity("cluster.local", "default", "web")]
    assert loaded[0].key_pem == good.key_pem


def test_corrupt_cache_files_are_ignored(tmp_path: Path) -> None:
    cache = ProxyCache(tmp_path / "c")
    cache.ensure_directory()
    (tmp_path / "c" / "state.pb").write_bytes(b"\xff\x00garbage")
    (tmp_path / "c" / "certs.json").write_text("[1, 2")
    assert cache.load_state() == {}
    assert cache.load_certs(datetime.now(UTC)) == []
    assert ProxyCache(tmp_path / "none").load_state() == {}
