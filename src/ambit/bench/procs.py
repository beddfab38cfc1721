"""The parent side of benchmark processes: start them, talk to them, read their CPU time, stop them.

A `Child` is ``python -m <module>`` with pipes on stdin/stdout (the protocol of
``ambit.bench.child``) in its own session, so a Ctrl-C at the terminal reaches only the parent,
which then stops the children it started. `Children` is the context manager that guarantees it:
on any exit, including errors and KeyboardInterrupt, each child's stdin is closed (its signal to
exit), and a child still alive after a grace period is terminated, then killed, by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from types import TracebackType
from typing import IO, Any

JsonObject = dict[str, Any]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ChildError(RuntimeError):
    """A benchmark process failed, exited, or did not answer in time."""


class Child:
    """One benchmark process; see the module docstring."""

    def __init__(self, name: str, module: str, config: JsonObject) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            bufsize=0,
        )
        self._stdin: IO[bytes] = self._pipe(self.proc.stdin)
        self._stdout: IO[bytes] = self._pipe(self.proc.stdout)
        self._pending = b""
        self.send(config)

    @staticmethod
    def _pipe(pipe: IO[bytes] | None) -> IO[bytes]:
        if pipe is None:
            raise ChildError("pipe missing")
        return pipe

    def send(self, message: JsonObject) -> None:
        try:
            self._stdin.write((json.dumps(message) + "\n").encode())
        except BrokenPipeError as exc:
            raise ChildError(f"{self.name} exited with {self.proc.poll()}") from exc

    def receive(self, timeout: float) -> JsonObject:
        """The next JSON line from the child; ChildError on EOF, an error message or timeout."""
        deadline = time.monotonic() + timeout
        fd = self._stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildError(f"{self.name} did not answer within {timeout:.0f}s")
            ready, _w, _x = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    raise ChildError(f"{self.name} exited with {self.proc.wait(5)}")
                self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ChildError(f"{self.name} sent {line!r}")
        if "error" in message:
            raise ChildError(f"{self.name}: {message['error']}")
        return message

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (from /proc, in clock ticks)."""
        with open(f"/proc/{self.proc.pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stop(self, grace: float = 5.0) -> None:
        """Close stdin (the child exits by itself), then terminate and kill if it lingers."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        finally:
            self._stdout.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._stdout.close()


class Children:
    """Starts children and stops every one of them when the block ends, however it ends."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def start(self, name: str, module: str, config: JsonObject) -> Child:
        child = Child(name, module, config)
        self._children.append(child)
        return child

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        for child in self._children:  # close every stdin first: they all exit in parallel
            with contextlib.suppress(OSError):
                child._stdin.close()
        interrupted: BaseException | None = None
        for child in reversed(self._children):
            try:
                child.stop()
            except BaseException as exc:  # e.g. a second Ctrl-C: still stop this one and the rest
                interrupted = interrupted or exc
                child.kill()
        self._children.clear()
        if interrupted is not None:
            raise interrupted
