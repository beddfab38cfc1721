"""A TCP connect prober: one connect every ``interval`` seconds to ``host:port``, closed at once, counting
how each attempt ended, until SIGTERM/SIGINT or ``duration``; then one JSON line on stdout::

    {"attempts": 2400, "connected": 2400, "refused": 0, "timeout": 0, "other": 0, "first_error": ""}

Run inside a pod's network namespace, a connect is accepted by the node's ztunnel (outbound capture), so
``refused`` counts the moments no ztunnel listener took the pod's traffic: during an overlapping ztunnel
restart it must stay 0. Usage: ``python -m ambit.apps.load.connect_probe HOST PORT [INTERVAL] [DURATION]``.
"""

from __future__ import annotations

import errno
import json
import signal
import socket
import sys
import time
from types import FrameType


def probe(host: str, port: int, interval: float = 0.01, duration: float = 3600.0) -> dict[str, object]:
    counts: dict[str, object] = {"attempts": 0, "connected": 0, "refused": 0, "timeout": 0, "other": 0}
    first_error = ""
    stop = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("connect-probe running", flush=True)
    deadline = time.monotonic() + duration
    next_at = time.monotonic()
    while not stop and time.monotonic() < deadline:
        counts["attempts"] = int(str(counts["attempts"])) + 1
        try:
            with socket.create_connection((host, port), timeout=1.0):
                pass
            outcome = "connected"
        except ConnectionRefusedError as exc:
            outcome, first_error = "refused", first_error or str(exc)
        except TimeoutError as exc:
            outcome, first_error = "timeout", first_error or str(exc) or "timeout"
        except OSError as exc:
            outcome = "refused" if exc.errno == errno.ECONNREFUSED else "other"
            first_error = first_error or str(exc)
        counts[outcome] = int(str(counts[outcome])) + 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    counts["first_error"] = first_error
    return counts


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    interval = float(argv[2]) if len(argv) > 2 else 0.01
    duration = float(argv[3]) if len(argv) > 3 else 3600.0
    print(json.dumps(probe(argv[0], int(argv[1]), interval, duration)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
