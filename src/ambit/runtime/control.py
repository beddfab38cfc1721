"""Component control: the runtime daemon's command channel (`ambit stop|start|kill|restart`, `ambit fault
reboot`).

The daemon listens on ``<cd>/daemon.sock`` (a Unix stream socket, mode 0600). A request is one JSON
line, answered with one JSON line, then the connection closes::

    {"op": "stop", "component": "ztunnel", "node": "node1", "name": null, "namespace": null, "seed": null}
    {"ok": true, "message": "...", "keys": ["ztunnel-node1"]}

``op`` is stop (SIGTERM + hold down), start (release + start now), kill (SIGKILL; the supervisor
restarts it) or restart (ztunnel: overlapping replacement; others: stop then start). ``component`` is
ztunnel (``node`` required), controlplane (every replica, or those on ``node`` / named ``name``),
store (in the daemon's own process: stop closes it, kill/restart close and reopen it at once) or pod
(``name``, ``namespace``). ``reboot`` takes only ``node`` (``node`` required, ``seed`` optional: the
order its pods come back in): every process of the node SIGKILLed, its pods' network namespaces
deleted, then the node boots (:mod:`ambit.runtime.controllers.node_reboot`; the reply adds ``boot``,
the monotonic time of the kill, ``seed``, ``order`` and ``killed``). The daemon also writes the held
keys to ``<cd>/held.json`` after every command, so `ambit status` can say "stopped" without asking the
daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ambit.runtime.layout import Layout, read_json, write_json

log = logging.getLogger(__name__)

OPS = ("stop", "start", "kill", "restart", "reboot")
COMPONENTS = ("ztunnel", "controlplane", "store", "pod", "node")
MAX_REQUEST = 64 * 1024


class ControlError(RuntimeError):
    """A refused or failed command (the message is for the user)."""


def socket_path(layout: Layout) -> Path:
    return layout.root / "daemon.sock"


def held_path(layout: Layout) -> Path:
    return layout.root / "held.json"


def write_held(layout: Layout, keys: Iterable[str]) -> None:
    write_json(held_path(layout), sorted(keys))


def read_held(layout: Layout) -> set[str]:
    try:
        data = read_json(held_path(layout))
    except (OSError, ValueError):
        return set()
    return {str(k) for k in data} if isinstance(data, list) else set()


@dataclass(frozen=True)
class Command:
    op: str
    component: str
    node: str | None = None
    name: str | None = None
    namespace: str | None = None
    seed: int | None = None  # reboot: the seed of the order the node's pods come back in

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "component": self.component,
            "node": self.node,
            "name": self.name,
            "namespace": self.namespace,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: Any) -> Command:
        if not isinstance(data, dict):
            raise ControlError("a request is a JSON object")

        def opt(field: str) -> str | None:
            value = data.get(field)
            if value is not None and not isinstance(value, str):
                raise ControlError(f"{field} must be a string")
            return value or None

        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ControlError("seed must be an integer")
        cmd = cls(
            str(data.get("op")), str(data.get("component")), opt("node"), opt("name"), opt("namespace"), seed
        )
        cmd.validate()
        return cmd

    def validate(self) -> None:
        if self.op not in OPS:
            raise ControlError(f"unknown operation {self.op!r} (one of {', '.join(OPS)})")
        if self.component not in COMPONENTS:
            raise ControlError(f"unknown component {self.component!r} (one of {', '.join(COMPONENTS)})")
        if (self.op == "reboot") != (self.component == "node"):
            raise ControlError("only a node reboots, and a node only reboots (ambit fault reboot NODE)")
        if self.component == "node" and (not self.node or self.name or self.namespace):
            raise ControlError("reboot takes a node and nothing else")
        if self.seed is not None and self.op != "reboot":
            raise ControlError("only a reboot takes a seed")
        if self.component == "ztunnel" and not self.node:
            raise ControlError("ztunnel needs --node")
        if self.component == "pod" and not self.name:
            raise ControlError("pod needs a NAME")
        if self.op == "restart" and self.component == "ztunnel" and self.name:
            raise ControlError("ztunnel takes no NAME")


@dataclass(frozen=True)
class RebootReply:
    """The daemon's answer to a reboot: the boot's id (the monotonic time of the SIGKILLs), the seed and
    the order (``namespace/name``) the node's pods come back in, the pids killed."""

    node: str
    boot: float
    seed: int
    order: tuple[str, ...]
    killed: tuple[int, ...]
    message: str

    @classmethod
    def from_reply(cls, node: str, reply: dict[str, Any]) -> RebootReply:
        try:
            return cls(
                node,
                float(reply["boot"]),
                int(reply["seed"]),
                tuple(str(p) for p in reply.get("order") or ()),
                tuple(int(p) for p in reply.get("killed") or ()),
                str(reply.get("message") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlError(f"bad reply to a reboot: {reply!r}") from exc


@dataclass(frozen=True)
class PodRef:
    """What :func:`resolve` needs to know of a pod the daemon runs."""

    namespace: str
    name: str
    node: str
    keys: tuple[str, ...]
    controlplane: bool = False


def ztunnel_key(node: str) -> str:
    return f"ztunnel-{node}"


def resolve(
    cmd: Command, nodes: Iterable[str], pods: Iterable[PodRef], supervised: Iterable[str]
) -> list[str]:
    """The supervisor keys ``cmd`` acts on (not for the store, which is not a process)."""
    known = set(supervised)
    if cmd.component == "ztunnel":
        assert cmd.node is not None
        if cmd.node not in set(nodes):
            raise ControlError(f"no node {cmd.node}")
        key = ztunnel_key(cmd.node)
        if key not in known:
            raise ControlError(f"no ztunnel runs on {cmd.node} (yet)")
        return [key]
    if cmd.component == "controlplane":
        chosen = [
            p
            for p in pods
            if p.controlplane
            and (cmd.node is None or p.node == cmd.node)
            and (cmd.name is None or p.name == cmd.name)
        ]
        what = (
            "control-plane replica"
            + (f" {cmd.name}" if cmd.name else "")
            + (f" on {cmd.node}" if cmd.node else "")
        )
    elif cmd.component == "pod":
        namespace = cmd.namespace or "default"
        chosen = [p for p in pods if p.name == cmd.name and p.namespace == namespace]
        what = f"pod {namespace}/{cmd.name}"
    else:
        raise ControlError(f"{cmd.component} is not a supervised process")
    keys = [k for p in sorted(chosen, key=lambda p: (p.namespace, p.name)) for k in p.keys if k in known]
    if not keys:
        raise ControlError(f"no running {what}")
    return keys


# --- the server (in the daemon) ------------------------------------------------------------------

Handler = Callable[[Command], Awaitable[dict[str, Any]]]


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._lock = asyncio.Lock()  # one command at a time

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, str(self.path), limit=MAX_REQUEST)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            try:
                cmd = Command.from_json(json.loads(line))
                async with self._lock:
                    log.info("command: %s", cmd)
                    reply = {"ok": True, **(await self.handler(cmd))}
            except ControlError as exc:
                reply = {"ok": False, "message": str(exc)}
            except ValueError as exc:
                reply = {"ok": False, "message": f"bad request: {exc}"}
            except Exception as exc:
                log.exception("command failed")
                reply = {"ok": False, "message": f"failed: {exc}"}
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            log.info("control connection: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


# --- the client (the CLI) ------------------------------------------------------------------------


def request(path: Path, cmd: Command, timeout: float = 90.0) -> dict[str, Any]:
    """Send one command and return the reply (blocking); raises ControlError when refused."""
    cmd.validate()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall((json.dumps(cmd.to_json()) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except OSError as exc:
        raise ControlError(f"the runtime daemon does not answer on {path}: {exc}") from exc
    try:
        reply = json.loads(buf)
    except ValueError as exc:
        raise ControlError(f"bad reply from the runtime daemon: {buf[:200]!r}") from exc
    if not isinstance(reply, dict):
        raise ControlError(f"bad reply from the runtime daemon: {reply!r}")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("message") or "refused"))
    return reply
