"""A run's records and what is computed from them: `RequestRecord`, `LoadResult`, per-second stats.

Pure: the JSON written by ``ambit app load --json`` is `LoadResult.to_json`, and `LoadResult.from_json`
reads it back (e2e tests and the bench parse it).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ambit.apps.load.outcomes import OK


@dataclass(slots=True)
class RequestRecord:
    """One scheduled request. Times are seconds since the run's start (`LoadResult.started_monotonic`)."""

    index: int
    scheduled: float
    started: float | None
    ended: float
    outcome: str
    mode: str = ""  # "new" or "keepalive": what the request asked for
    connection: str = ""  # "new" or "reused": what it got ("" if it never got one)
    status: int | None = None
    detail: str = ""
    retried: bool = False
    served_by: str = ""  # with ``served_by_field``: that field of a 2xx JSON answer ("" otherwise)

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def latency(self) -> float:
        """Seconds from the scheduled start to the end (includes any delay in sending).

        From the actual start if that came first (a millisecond timer, as uvloop's, may fire early).
        """
        began = self.scheduled if self.started is None else min(self.scheduled, self.started)
        return self.ended - began

    def to_dict(self) -> dict[str, Any]:
        return {
            "i": self.index,
            "scheduled": round(self.scheduled, 6),
            "started": None if self.started is None else round(self.started, 6),
            "ended": round(self.ended, 6),
            "latency": round(self.latency, 6),
            "outcome": self.outcome,
            "mode": self.mode,
            "connection": self.connection,
            "status": self.status,
            "detail": self.detail,
            "retried": self.retried,
            "served_by": self.served_by,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(
            index=int(data["i"]),
            scheduled=float(data["scheduled"]),
            started=None if data.get("started") is None else float(data["started"]),
            ended=float(data["ended"]),
            outcome=str(data["outcome"]),
            mode=str(data.get("mode", "")),
            connection=str(data.get("connection", "")),
            status=None if data.get("status") is None else int(data["status"]),
            detail=str(data.get("detail", "")),
            retried=bool(data.get("retried", False)),
            served_by=str(data.get("served_by", "")),
        )


def percentile_of(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (0 <= p <= 100) of an ascending sequence; None if it is empty."""
    if not 0 <= p <= 100:
        raise ValueError("percentile must be in [0, 100]")
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class SecondStats:
    """The requests *scheduled* in ``[second, second + 1)`` of the run."""

    second: int
    scheduled: int
    ok: int
    failed: int
    outcomes: dict[str, int]
    max_latency: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "second": self.second,
            "scheduled": self.scheduled,
            "ok": self.ok,
            "failed": self.failed,
            "outcomes": self.outcomes,
            "max_latency": None if self.max_latency is None else round(self.max_latency, 6),
        }


PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(slots=True)
class LoadResult:
    """Every request of a run, in schedule order, and what can be computed from them.

    Record times are seconds since `started_monotonic` (``time.monotonic()``, CLOCK_MONOTONIC,
    which on Linux is one clock for every process): an event timed with ``time.monotonic()``,
    in this process or another, is at ``t - started_monotonic`` on the run's timeline.
    """

    config: dict[str, Any]
    started_wall: float  # time.time() at the start
    started_monotonic: float  # time.monotonic() at the start; record times are relative to it
    elapsed: float  # seconds from the start to the last request's end
    records: list[RequestRecord] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return float(self.config["duration"])

    @property
    def total(self) -> int:
        return len(self.records)

    @property
    def ok(self) -> int:
        return sum(1 for r in self.records if r.outcome == OK)

    @property
    def failed(self) -> int:
        """How many requests did not end ``ok``."""
        return self.total - self.ok

    @property
    def failures(self) -> list[RequestRecord]:
        return [r for r in self.records if r.outcome != OK]

    @property
    def retried(self) -> int:
        return sum(1 for r in self.records if r.retried)

    def failed_between(self, start: float, end: float) -> list[RequestRecord]:
        """Failed requests scheduled in ``[start, end)`` (seconds since the start)."""
        return [r for r in self.records if r.outcome != OK and start <= r.scheduled < end]

    def outcomes(self) -> dict[str, int]:
        counts = Counter(r.outcome for r in self.records)
        return dict(sorted(counts.items(), key=lambda kv: (kv[0] != OK, -kv[1], kv[0])))

    def connections(self) -> dict[str, int]:
        """How many requests went on a new and on a reused connection."""
        counts = Counter(r.connection or "none" for r in self.records)
        return dict(sorted(counts.items()))

    def latencies(self, *, ok_only: bool = True) -> list[float]:
        """Latencies in seconds, ascending (of ``ok`` requests only, by default)."""
        return sorted(r.latency for r in self.records if r.outcome == OK or not ok_only)

    def percentile(self, p: float, *, ok_only: bool = True) -> float | None:
        """The `p`-th percentile latency in seconds (nearest rank), None without requests."""
        return percentile_of(self.latencies(ok_only=ok_only), p)

    @property
    def achieved_rate(self) -> float:
        """Requests actually started per second, over the longer of the schedule and the last start."""
        starts = [r.started for r in self.records if r.started is not None]
        if not starts:
            return 0.0
        return len(starts) / max(self.duration, *starts)

    def by_second(self) -> list[SecondStats]:
        """Per-second timeline by scheduled time; every second of the run appears, even empty."""
        seconds = max(1, math.ceil(self.duration - 1e-9))
        if self.records:
            seconds = max(seconds, math.floor(self.records[-1].scheduled) + 1)
        buckets: list[list[RequestRecord]] = [[] for _ in range(seconds)]
        for record in self.records:
            buckets[min(max(0, math.floor(record.scheduled)), seconds - 1)].append(record)
        timeline = []
        for second, bucket in enumerate(buckets):
            ok = sum(1 for r in bucket if r.outcome == OK)
            outcomes = dict(sorted(Counter(r.outcome for r in bucket).items()))
            latencies = [r.latency for r in bucket if r.outcome == OK]
            timeline.append(
                SecondStats(second, len(bucket), ok, len(bucket) - ok, outcomes, max(latencies, default=None))
            )
        return timeline

    def summary(self) -> dict[str, Any]:
        latencies = self.latencies()
        return {
            "target": self.config["target"],
            "mode": self.config["mode"],
            "rate": self.config["rate"],
            "duration": self.duration,
            "total": self.total,
            "ok": len(latencies),
            "failed": self.total - len(latencies),
            "retried": self.retried,
            "outcomes": self.outcomes(),
            "connections": self.connections(),
            "achieved_rate": round(self.achieved_rate, 3),
            "elapsed": round(self.elapsed, 3),
            "latency": {
                **{f"p{p:g}": _round(percentile_of(latencies, p)) for p in PERCENTILES},
                "max": _round(latencies[-1] if latencies else None),
            },
        }

    def to_dict(self, *, records: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "config": self.config,
            "started_wall": self.started_wall,
            "started_monotonic": self.started_monotonic,
            "elapsed": self.elapsed,
            "summary": self.summary(),
            "by_second": [s.to_dict() for s in self.by_second()],
        }
        if records:
            data["records"] = [r.to_dict() for r in self.records]
        return data

    def to_json(self, *, records: bool = True, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(records=records), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadResult:
        return cls(
            config=dict(data["config"]),
            started_wall=float(data["started_wall"]),
            started_monotonic=float(data["started_monotonic"]),
            elapsed=float(data["elapsed"]),
            records=[RequestRecord.from_dict(r) for r in data.get("records", [])],
        )

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        return cls.from_dict(json.loads(text))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
