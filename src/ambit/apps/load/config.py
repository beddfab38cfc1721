"""One load run's knobs and bounds: `LoadConfig`, the parsed `Target`, the modes and the limits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Mode = Literal["new", "keepalive", "mixed"]
MODES: tuple[Mode, ...] = ("new", "keepalive", "mixed")

MAX_RATE = 20000.0
MAX_DURATION = 3600.0
MAX_REQUESTS = 1_000_000
MAX_TIMEOUT = 60.0
MAX_PAYLOAD = 1024 * 1024
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECTIONS = 8
DEFAULT_TCP_PAYLOAD = 64


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load goes: ``http`` (host, port, path with query) or ``tcp`` (host, port)."""

    scheme: Literal["http", "tcp"]
    host: str
    port: int
    path: str = "/"

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "tcp"):
            raise ValueError(f"target must be http://host[:port]/path or tcp://host:port, not {url!r}")
        if not parts.hostname:
            raise ValueError(f"target {url!r} has no host")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"target {url!r}: {exc}") from None
        if parts.scheme == "tcp":
            if port is None:
                raise ValueError(f"tcp target {url!r} needs a port")
            return cls("tcp", parts.hostname, port, "")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls("http", parts.hostname, 80 if port is None else port, path)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """One load run; see the module docstring for the meaning of each knob."""

    target: str
    rate: float
    duration: float
    mode: Mode = "keepalive"
    connections: int = DEFAULT_CONNECTIONS
    max_connections: int | None = None
    max_inflight: int = 4096
    timeout: float = DEFAULT_TIMEOUT
    payload: int | None = None
    marker: str = "ambit-load"
    method: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    expect_prefix: str | None = None
    retry_stale: bool = True
    queue: bool = False
    max_age: float | None = None
    served_by_field: str | None = None

    @property
    def total_requests(self) -> int:
        """How many requests the run schedules: ``floor(rate * duration)``."""
        return math.floor(self.rate * self.duration + 1e-9)

    @property
    def pool_limit(self) -> int:
        return self.max_connections if self.max_connections is not None else max(self.connections, 512)

    def payload_bytes(self, scheme: str) -> int:
        if self.payload is not None:
            return self.payload
        return DEFAULT_TCP_PAYLOAD if scheme == "tcp" else 0

    def validate(self) -> Target:
        """The parsed target; ValueError when a knob is out of bounds."""
        target = Target.parse(self.target)
        if not 0 < self.rate <= MAX_RATE:
            raise ValueError(f"rate must be in (0, {MAX_RATE:.0f}]")
        if not 0 < self.duration <= MAX_DURATION:
            raise ValueError(f"duration must be in (0, {MAX_DURATION:.0f}] seconds")
        if self.total_requests > MAX_REQUESTS:
            raise ValueError(f"rate * duration must not exceed {MAX_REQUESTS} requests")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout must be in (0, {MAX_TIMEOUT:.0f}] seconds")
        if not 1 <= self.connections <= self.pool_limit:
            raise ValueError("need 1 <= connections <= max_connections")
        if self.max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        if not 0 <= self.payload_bytes(target.scheme) <= MAX_PAYLOAD:
            raise ValueError(f"payload must be in [0, {MAX_PAYLOAD}] bytes")
        if any(c in self.marker for c in "\r\n"):
            raise ValueError("marker must be one line")
        for name, value in self.headers:
            if not name or any(c in name + value for c in "\r\n") or ":" in name:
                raise ValueError(f"bad header {name!r}")
        if self.max_age is not None and not self.max_age > 0:
            raise ValueError("max_age must be > 0 seconds")
        if self.served_by_field is not None:
            if not self.served_by_field:
                raise ValueError("served_by_field must not be empty")
            if target.scheme != "http":
                raise ValueError("served_by_field needs an http target")
        return target

    def keepalive(self, index: int) -> bool:
        """Whether request `index` uses a kept-alive connection."""
        return self.mode == "keepalive" or (self.mode == "mixed" and index % 2 == 1)
