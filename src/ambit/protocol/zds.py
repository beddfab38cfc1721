"""The node agent ↔ ztunnel protocol (ambit's version of Istio's ZDS), sans-IO.

Transport (done by the edges, not here): a Unix `SOCK_SEQPACKET` socket per node at
`<cluster dir>/nodes/<node>/ztunnel.sock`; the **node agent listens**, ztunnel connects. One message per
packet, UTF-8 JSON, at most `MAX_MESSAGE` bytes; an `add` carries the pod's network-namespace file
descriptor as `SCM_RIGHTS` ancillary data (exactly one fd; none on other messages).

Conversation (as Istio's ZDS):
1. ztunnel → agent `Hello(version=1)`.
2. agent → ztunnel: one `AddWorkload` (+ netns fd) per enrolled pod of the node, then `SnapshotSent`.
   ztunnel drops any pod it was serving that was not replayed.
3. Afterwards, at any time: `AddWorkload` (+ fd) for a newly enrolled pod, `DelWorkload` when a pod
   is un-enrolled or deleted.
4. ztunnel answers every Add/Del/SnapshotSent with `Ack(uid, error)`; the agent starts (or keeps) a
   pod's app only after an `Ack` without error: a pod never runs uncaptured.

With two ztunnels connected during an overlapping restart, the agent sends adds to the newest
connection and deletes to all (Istio's rule).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
MAX_MESSAGE = 64 * 1024


class ZdsError(ValueError):
    """A malformed or unexpected message; the connection should be closed."""


@dataclass(frozen=True, slots=True)
class WorkloadInfo:
    name: str
    namespace: str
    service_account: str
    ips: tuple[str, ...] = ()
    node: str = ""


@dataclass(frozen=True, slots=True)
class Hello:
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class AddWorkload:
    """A pod to capture; its netns fd travels with the packet."""

    uid: str
    workload: WorkloadInfo


@dataclass(frozen=True, slots=True)
class DelWorkload:
    uid: str


@dataclass(frozen=True, slots=True)
class SnapshotSent:
    """Every enrolled pod of the node has been sent."""


@dataclass(frozen=True, slots=True)
class Ack:
    uid: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


Message = Hello | AddWorkload | DelWorkload | SnapshotSent | Ack


@dataclass(frozen=True, slots=True)
class Frame:
    """One packet: its bytes and whether it must carry exactly one fd."""

    data: bytes
    needs_fd: bool = field(default=False)


def encode(message: Message) -> Frame:
    body: dict[str, Any]
    if isinstance(message, Hello):
        body = {"type": "hello", "version": message.version}
    elif isinstance(message, AddWorkload):
        w = message.workload
        body = {
            "type": "add",
            "uid": message.uid,
            "workload": {
                "name": w.name,
                "namespace": w.namespace,
                "service_account": w.service_account,
                "ips": list(w.ips),
                "node": w.node,
            },
        }
    elif isinstance(message, DelWorkload):
        body = {"type": "del", "uid": message.uid}
    elif isinstance(message, SnapshotSent):
        body = {"type": "snapshot_sent"}
    else:
        body = {"type": "ack", "uid": message.uid, "error": message.error}
    data = json.dumps(body, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ZdsError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return Frame(data, needs_fd=isinstance(message, AddWorkload))


def decode(data: bytes, *, fds: int) -> Message:
    """Parse one packet; `fds` is how many descriptors arrived with it (checked against the type)."""
    if len(data) > MAX_MESSAGE:
        raise ZdsError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZdsError(f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ZdsError("a message must be a JSON object")
    kind = body.get("type")
    expected_fds = 1 if kind == "add" else 0
    if fds != expected_fds:
        raise ZdsError(f"{kind!r} message carried {fds} file descriptors, expected {expected_fds}")
    if kind == "hello":
        version = body.get("version")
        if version != VERSION:
            raise ZdsError(f"unsupported protocol version {version!r} (this side speaks {VERSION})")
        return Hello(version)
    if kind == "add":
        w = body.get("workload")
        if not isinstance(w, dict):
            raise ZdsError("add without a workload")
        ips = w.get("ips", [])
        if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
            raise ZdsError("workload.ips must be a list of strings")
        return AddWorkload(
            _text(body, "uid"),
            WorkloadInfo(
                name=_text(w, "name"),
                namespace=_text(w, "namespace"),
                service_account=_text(w, "service_account"),
                ips=tuple(ips),
                node=str(w.get("node", "")),
            ),
        )
    if kind == "del":
        return DelWorkload(_text(body, "uid"))
    if kind == "snapshot_sent":
        return SnapshotSent()
    if kind == "ack":
        error = body.get("error")
        if error is not None and not isinstance(error, str):
            raise ZdsError("ack.error must be a string or null")
        return Ack(str(body.get("uid", "")), error)
    raise ZdsError(f"unknown message type {kind!r}")


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ZdsError(f"{key} must be a non-empty string")
    return value
