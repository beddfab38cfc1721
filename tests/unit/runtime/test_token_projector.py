"""The kubelet's projected pod tokens: written once, renewed at 80 % of the TTL, removed with the pod."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from ambit.identity.tokens import TokenSigner, TokenVerifier
from ambit.runtime.controllers.tokens import TokenProjector

KEY = ec.generate_private_key(ec.SECP256R1())
POD = {"uid": "uid-1", "namespace": "shop", "name": "waypoint-1", "service_account": "waypoint"}


def test_written_once_renewed_when_due_and_removed(tmp_path: Path) -> None:
    now = [datetime(2026, 12, 7, 12, 0, tzinfo=UTC)]
    projector = TokenProjector(
        TokenSigner(KEY), tmp_path / "pods", ttl=timedelta(hours=1), clock=lambda: now[0]
    )
    path = projector.path("uid-1")
    assert projector.project(**POD)
    first = path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert TokenVerifier([KEY.public_key()]).verify(first, now=now[0]).pod_uid == "uid-1"

    now[0] += timedelta(minutes=47, seconds=59)  # just before 80 % of an hour
    assert not projector.project(**POD) and path.read_text() == first
    now[0] += timedelta(seconds=1)  # at 48 minutes: renewed
    assert projector.project(**POD)
    second = path.read_text()
    assert second != first
    token = TokenVerifier([KEY.public_key()]).verify(second, now=now[0])
    assert token.expires_at == now[0] + timedelta(hours=1)

    projector.remove("uid-1")
    assert not path.parent.exists()
    assert projector.project(**POD), "a pod seen again gets a token again"
