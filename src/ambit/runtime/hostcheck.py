"""A comparable snapshot of the host's network namespace (the calling thread's), to prove that a
cluster's whole life left nothing behind there (DESIGN §3: the host namespace is never touched).

It records addresses, routes and policy rules (IPv4 and IPv6, every table), the nftables ruleset and
the forwarding sysctls. Fields that change on their own (address lifetimes, route expiry, counters)
are dropped so two snapshots of an untouched host compare equal.
"""

from __future__ import annotations

import difflib
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding")
VOLATILE_KEYS = frozenset({"valid_life_time", "preferred_life_time", "expires", "packets", "bytes", "used"})


@dataclass(frozen=True)
class HostSnapshot:
    addresses: str
    routes: str
    rules: str
    nftables: str
    sysctls: str

    def diff(self, other: HostSnapshot) -> list[str]:
        """Human-readable differences (empty when equal)."""
        out: list[str] = []
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                out.append(f"--- {f.name} differs")
                out += difflib.unified_diff(
                    a.splitlines(), b.splitlines(), "before", "after", lineterm="", n=1
                )
        return out


def snapshot() -> HostSnapshot:
    return HostSnapshot(
        addresses=_canon([_ip_json(["-4", "addr"]), _ip_json(["-6", "addr"])]),
        routes=_canon([_ip_json([v, "route", "show", "table", "all"]) for v in ("-4", "-6")]),
        rules=_canon([_ip_json(["-4", "rule"]), _ip_json(["-6", "rule"])]),
        nftables=_canon(_json(["nft", "-j", "list", "ruleset"])),
        sysctls=_canon({name: _read_sysctl(name) for name in SYSCTLS}),
    )


def _read_sysctl(name: str) -> str:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()
    except OSError as exc:
        return f"<{exc.strerror}>"


def _ip_json(args: Sequence[str]) -> Any:
    return _json(["ip", "-j", *args])


def _json(argv: Sequence[str]) -> Any:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip(), "rc": proc.returncode}
    text = proc.stdout.strip()
    return json.loads(text) if text else None


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _canon(value: Any) -> str:
    return json.dumps(_strip(value), sort_keys=True, indent=1)
