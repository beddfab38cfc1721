"""When each pod's app started, against its capture and its ztunnel's ACK: the record the kubelet keeps
and the rule it must satisfy (fail closed: an enrolled pod's app never starts before both).

The kubelet appends one JSON line per pod start (a fresh sandbox's first container start, not the
supervisor's restarts) to ``<cd>/nodes/<node>/pod-starts.jsonl`` (:func:`records_path`)::

    {"node": "node2", "namespace": "ns", "name": "p", "uid": "...", "ip": "10.244.2.3",
     "enrolled": true, "capture": 812.41, "ack": 813.97, "app": 813.97, "boot": 811.02, "rank": 1}

Times are the machine's monotonic clock (``time.monotonic()``, shared by every process): ``capture``
once the pod's nftables capture was installed, ``ack`` once the node's ztunnel acknowledged the pod
(ZDS), ``app`` just before the first container process was spawned (the process starts after it).
``boot`` is the monotonic time of the node reboot this start belongs to (the SIGKILLs; None for a start
outside a reboot) and ``rank`` the pod's place in that boot's random order. :func:`violations` is the
pure check; ``ClusterHandle.pod_start_order`` reads the file back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ambit.runtime.layout import Layout

RECORDS_FILE = "pod-starts.jsonl"


def records_path(layout: Layout, node: str) -> Path:
    return layout.node_dir(node) / RECORDS_FILE


@dataclass(frozen=True, slots=True)
class StartRecord:
    """One pod's start: where, and when its capture, its ztunnel's ACK and its app came."""

    node: str
    namespace: str
    name: str
    uid: str
    ip: str
    enrolled: bool
    capture: float | None
    ack: float | None
    app: float
    boot: float | None = None
    rank: int | None = None

    @property
    def pod(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "ip": self.ip,
            "enrolled": self.enrolled,
            "capture": self.capture,
            "ack": self.ack,
            "app": self.app,
            "boot": self.boot,
            "rank": self.rank,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StartRecord:
        def time_or_none(field: str) -> float | None:
            value = data.get(field)
            return None if value is None else float(value)

        rank = data.get("rank")
        return cls(
            node=str(data["node"]),
            namespace=str(data["namespace"]),
            name=str(data["name"]),
            uid=str(data["uid"]),
            ip=str(data.get("ip") or ""),
            enrolled=bool(data["enrolled"]),
            capture=time_or_none("capture"),
            ack=time_or_none("ack"),
            app=float(data["app"]),
            boot=time_or_none("boot"),
            rank=None if rank is None else int(rank),
        )


def line(record: StartRecord) -> str:
    return json.dumps(record.to_json(), sort_keys=True) + "\n"


def parse(text: str) -> list[StartRecord]:
    """The records of a file's text; a torn or foreign line is skipped."""
    found: list[StartRecord] = []
    for raw in text.splitlines():
        try:
            data = json.loads(raw)
            if isinstance(data, dict):
                found.append(StartRecord.from_json(data))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def last_boot(records: Iterable[StartRecord]) -> float | None:
    """The latest reboot the records know of (None: no reboot)."""
    boots = [r.boot for r in records if r.boot is not None]
    return max(boots) if boots else None


def of_boot(records: Iterable[StartRecord], boot: float) -> list[StartRecord]:
    """The starts of one reboot, in the order the apps started."""
    return sorted((r for r in records if r.boot == boot), key=lambda r: r.app)


def violation(record: StartRecord) -> str | None:
    """Why this start broke the rule (an enrolled pod's app after its capture and after its ztunnel's
    ACK, the capture first), or None."""
    if not record.enrolled:
        return None
    if record.capture is None:
        return f"{record.pod}: app started with no capture installed"
    if record.ack is None:
        return f"{record.pod}: app started with no ACK from the node's ztunnel"
    if record.ack < record.capture:
        return f"{record.pod}: ztunnel ACKed at {record.ack:.3f} before the capture at {record.capture:.3f}"
    if record.app < record.capture:
        return f"{record.pod}: app started at {record.app:.3f} before its capture at {record.capture:.3f}"
    if record.app < record.ack:
        return f"{record.pod}: app started at {record.app:.3f} before the ztunnel's ACK at {record.ack:.3f}"
    return None


def violations(records: Sequence[StartRecord], must_enrol: Iterable[str] = ()) -> list[str]:
    """Every start that broke the rule, one line each. ``must_enrol``: pods (``namespace/name``) that are
    enrolled in the mesh: each must have a start among ``records`` and be recorded as enrolled (a pod
    that started outside the mesh, or whose start went unrecorded, proves nothing and counts)."""
    found = [why for r in records if (why := violation(r)) is not None]
    by_pod = {r.pod: r for r in records}
    for pod in sorted(set(must_enrol)):
        record = by_pod.get(pod)
        if record is None:
            found.append(f"{pod}: no start recorded")
        elif not record.enrolled:
            found.append(f"{pod}: started outside the mesh (not enrolled)")
    return found
