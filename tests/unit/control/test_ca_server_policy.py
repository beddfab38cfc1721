"""The workload-certificate policy of the CA service (``--workload-cert-ttl``, ``--outage-tolerance``) and
the backdating of short certificates that keeps their half-life half a lifetime after issue."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ambit.control.ca_server import WorkloadCertPolicy, backdate
from ambit.identity.ca import CLOCK_SKEW, DEFAULT_MAX_TTL, DEFAULT_TTL

S = timedelta(seconds=1)
H = timedelta(hours=1)


def test_without_options_the_caller_gets_what_it_asks_and_the_ca_default_otherwise() -> None:
    policy = WorkloadCertPolicy.resolve()
    assert policy == WorkloadCertPolicy()
    assert policy.lifetime(24 * H, DEFAULT_TTL) == 24 * H
    assert policy.lifetime(5 * S, DEFAULT_TTL) == 5 * S
    assert policy.lifetime(None, DEFAULT_TTL) == DEFAULT_TTL == 24 * H


def test_a_ttl_caps_every_request_and_is_the_default() -> None:
    policy = WorkloadCertPolicy.resolve(ttl=60 * S)
    assert policy.lifetime(24 * H, DEFAULT_TTL) == 60 * S  # what a ztunnel asks for
    assert policy.lifetime(None, DEFAULT_TTL) == 60 * S
    assert policy.lifetime(30 * S, DEFAULT_TTL) == 30 * S  # shorter requests are honoured


def test_the_tolerance_sets_the_minimum_to_twice_itself() -> None:
    policy = WorkloadCertPolicy.resolve(outage_tolerance=30 * H)
    assert policy.minimum == 60 * H
    assert policy.lifetime(24 * H, DEFAULT_TTL) == 60 * H  # the default is raised
    assert policy.lifetime(None, DEFAULT_TTL) == 60 * H
    assert policy.lifetime(100 * H, DEFAULT_TTL) == 100 * H


def test_a_ttl_of_exactly_twice_the_tolerance_is_accepted() -> None:
    policy = WorkloadCertPolicy.resolve(ttl=60 * S, outage_tolerance=30 * S)
    assert policy.lifetime(24 * H, DEFAULT_TTL) == 60 * S


def test_a_ttl_shorter_than_twice_the_tolerance_is_refused_naming_both_flags() -> None:
    with pytest.raises(
        ValueError, match="--workload-cert-ttl 60s is shorter than twice --outage-tolerance 40s"
    ):
        WorkloadCertPolicy.resolve(ttl=60 * S, outage_tolerance=40 * S)
    with pytest.raises(ValueError, match="--workload-cert-ttl 80s or more"):
        WorkloadCertPolicy.resolve(ttl=60 * S, outage_tolerance=40 * S)


@pytest.mark.parametrize(
    ("ttl", "tolerance", "message"),
    [
        (5 * S, None, "too short: at least 10s"),
        (DEFAULT_MAX_TTL + S, None, "exceeds the CA's maximum of 90 days"),
        (None, timedelta(0), "must be positive"),
        (None, DEFAULT_MAX_TTL, "more than the CA's maximum"),
    ],
)
def test_out_of_bounds_values_are_refused(
    ttl: timedelta | None, tolerance: timedelta | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        WorkloadCertPolicy.resolve(ttl=ttl, outage_tolerance=tolerance)


def test_short_certificates_are_backdated_by_a_tenth_of_their_lifetime() -> None:
    assert backdate(24 * H) == CLOCK_SKEW
    assert backdate(10 * CLOCK_SKEW) == CLOCK_SKEW
    assert backdate(60 * S) == 6 * S
    # A 60 s certificate signed at t runs from t-6 to t+60: half-life at t+27, refreshed every ~30 s.
    lifetime = 60 * S
    assert -backdate(lifetime) + (lifetime + backdate(lifetime)) / 2 == 27 * S
