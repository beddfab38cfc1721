"""Changing an object's labels through a store client: read, change, compare-and-swap, retry.

One home for the read-modify-write loop that ``ClusterHandle.label`` and ``ambit waypoint
--enroll-namespace`` share: a concurrent writer makes the update fail with ``Conflict``, and the change
is applied again to what it wrote.
"""

from __future__ import annotations

from collections.abc import Mapping

from ambit.store.client import StoreClient
from ambit.store.types import Conflict

LABEL_RETRIES = 10


async def set_labels(
    client: StoreClient,
    kind: str,
    name: str,
    changes: Mapping[str, str | None],
    namespace: str | None = None,
) -> bool:
    """Set (a value) or remove (None) labels of one object; whether anything changed.

    ``NotFound`` and other store errors propagate; ``Conflict`` after ``LABEL_RETRIES`` attempts too.
    """
    for _ in range(LABEL_RETRIES):
        obj = await client.get(kind, name, namespace)
        current = dict((obj.get("metadata") or {}).get("labels") or {})
        new = {k: v for k, v in {**current, **changes}.items() if v is not None}
        if new == current:
            return False
        obj["metadata"] = {**obj["metadata"], "labels": new}
        try:
            await client.update(obj)
        except Conflict:
            continue
        return True
    raise Conflict(f"{kind} {name} kept changing; gave up after {LABEL_RETRIES} tries", status=409)
