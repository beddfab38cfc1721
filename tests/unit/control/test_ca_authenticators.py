"""Which credentials a control-plane replica's CA accepts: node certificates, and pod tokens when the
cluster has token keys."""

from __future__ import annotations

from pathlib import Path

from ambit.control.app import ca_authenticators
from ambit.identity.authenticators import NodeCertificateAuthenticator, PodTokenAuthenticator
from ambit.identity.tokens import create_token_keys


def test_pod_tokens_are_accepted_only_when_the_cluster_has_token_keys(tmp_path: Path) -> None:
    assert [type(a) for a in ca_authenticators(tmp_path)] == [NodeCertificateAuthenticator]
    create_token_keys(tmp_path / "tokens")
    assert [type(a) for a in ca_authenticators(tmp_path)] == [
        NodeCertificateAuthenticator,
        PodTokenAuthenticator,
    ]
