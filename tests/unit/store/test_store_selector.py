"""Label selectors in their string form, and the watcher queue bound (pure parts of the server)."""

from __future__ import annotations

import pytest

from ambit.store.selector import SelectorError, parse_selector
from ambit.store.server import _Watcher
from ambit.store.types import WatchEvent


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app=web,tier=front", {"app": "web", "tier": "front"}, True),
        ("app=web,tier=front", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("env in (a, b)", {"env": "b"}, True),
        ("env notin (a,b),app", {"env": "c", "app": "x"}, True),
        ("istio.io/dataplane-mode=ambient", {"istio.io/dataplane-mode": "ambient"}, True),
    ],
)
def test_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(selector)(labels) is expected


@pytest.mark.parametrize("selector", ["a=b,", "!a=b", "=x", "a=(b)"])
def test_bad_selectors(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(selector)


def event(kind: str, rv: int) -> WatchEvent:
    return WatchEvent("ADDED", {"kind": kind, "metadata": {"name": "x", "resourceVersion": str(rv)}})


async def test_watcher_filters_kinds_and_overflows_instead_of_growing() -> None:
    watcher = _Watcher(frozenset({"Pod"}), limit=3)
    watcher.push([event("Pod", 1), event("Service", 2)])
    assert [e.revision for e in watcher.pending] == [1]
    assert watcher.wake.is_set()
    watcher.push([event("Pod", i) for i in range(3, 6)])
    assert watcher.overflow
    assert not watcher.pending  # memory released; the stream ends with a 410 ERROR event
    watcher.push([event("Pod", 7)])
    assert not watcher.pending
