"""The stream-reset budget of an HBONE connection: a token bucket over the peer's stream resets.

HTTP/2 rapid reset (CVE-2023-44487) opens and resets streams faster than a server can set them up;
nghttp2 answers a peer that exceeds a refilling allowance with GOAWAY(ENHANCE_YOUR_CALM), and so does
`protocol.hbone` with the same defaults. Time is injected so tests drive the bucket deterministically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class ResetBudget:
    """Token bucket over remote stream resets (nghttp2's rapid-reset defence, same defaults)."""

    burst: int
    refill_per_second: float
    clock: Callable[[], float]
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.stamp = self.clock()

    def spend(self) -> bool:
        """Take one token; False when the peer has exhausted its allowance."""
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.refill_per_second)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
