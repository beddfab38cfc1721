"""``Versioner``: the versions of :func:`versioned`, with unchanged values served from a memo."""

from __future__ import annotations

import dataclasses

import pytest

from ambit.control.cache import Value, Versioner, versioned
from ambit.model.workload import HealthStatus, Service, ServicePort, Workload


def wl(uid: str, status: HealthStatus = HealthStatus.HEALTHY) -> Workload:
    return Workload(uid, f"pod-{uid}", "default", "sa", "n1", (f"10.0.0.{len(uid)}",), status=status)


def test_same_versions_as_versioned_and_memo_reuses_unchanged_values() -> None:
    web = Service("web", "default", "web.default.svc.cluster.local", ("10.96.0.1",), (ServicePort(80, 8080),))
    a, bb = wl("a"), wl("bb")
    values: list[Value] = [a, bb, web]
    versioner = Versioner()
    first = versioner(values)
    assert first == versioned(values)
    assert (versioner.hits, versioner.misses) == (0, 3)

    again: list[Value] = [dataclasses.replace(a), dataclasses.replace(bb, status=HealthStatus.UNHEALTHY), web]
    second = versioner(again)
    assert second == versioned(again)
    assert (versioner.hits, versioner.misses) == (2, 4)
    assert second["wl/a"][1] is a  # an equal value keeps its previous object
    assert second["wl/bb"][0] != first["wl/bb"][0]

    third = versioner([web])  # the memo keeps only the previous call's values
    assert third == versioned([web])
    assert versioner(values) == first
    assert versioner.misses == 6


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="two resources are named wl/a"):
        Versioner()([wl("a"), wl("a", HealthStatus.UNHEALTHY)])
