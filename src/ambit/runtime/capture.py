"""Traffic capture for an ambient pod, installed inside the pod's netns (DESIGN §3, facts §1.2).

nftables table ``inet ambit-capture``, the nft form of Istio's in-pod REDIRECT rules:

- **Outbound** (nat ``output``): TCP that is not to ``127.0.0.0/8``, not out through ``lo`` (the pod
  talking to itself), not to the probe address, and whose socket is not marked by ztunnel
  (``0x539/0xfff``) → ``redirect to :15001``. ztunnel reads the original destination with
  ``SO_ORIGINAL_DST``; redirect in ``output`` rewrites the destination to ``127.0.0.1``.
- **Inbound** (nat ``prerouting``): TCP except to port 15008 (HBONE, served by ztunnel's in-pod
  listener directly), except from the readiness-probe source ``169.254.7.127``, except to loopback
  and except ztunnel's own marked packets → ``redirect to :15006``.
- **Transparent upstream.** ztunnel delivers inbound traffic to the app from the *client's* pod IP
  (``IP_TRANSPARENT`` socket bound to a foreign address, marked ``0x539``). Its packets loop through
  ``lo``; in ``prerouting`` a packet carrying ``0x539`` sets the connection mark ``0x111/0xfff``; in
  ``output`` (a ``route`` chain, so a changed mark re-routes) packets of such connections get the
  connection mark restored as their packet mark; the policy rule ``fwmark 0x111/0xfff lookup 133``
  with ``local 0.0.0.0/0 dev lo`` in table 133 sends the app's replies to that foreign address back
  to ztunnel instead of out of ``eth0``.

Why the route matches ``0x111`` and not ``0x539`` (as in Istio): ztunnel's *outbound* sockets in the
pod netns (HBONE to other nodes) also carry ``0x539``; a rule on ``0x539`` would route them to
``lo`` and they would never leave the pod. Only connections that entered through ``lo`` with
``0x539`` (ztunnel → local app) get ``0x111``.

Not captured: UDP (ztunnel's DNS proxy on 15053 is optional; its DNS redirect is not installed here).
IPv6: pod interfaces other than ``lo`` have IPv6 disabled (netplan), so there is no IPv6 path out.
"""

from __future__ import annotations

import subprocess

from ambit.runtime import nsexec
from ambit.runtime.netplan import PROBE_SOURCE

TABLE = "ambit-capture"
ZTUNNEL_MARK = 0x539  # ztunnel's SO_MARK (Istio PACKET_MARK 1337)
MARK_MASK = 0xFFF
CONN_MARK = 0x111  # connections ztunnel opened to the local app (transparent upstream)
ROUTE_TABLE = 133
RULE_PRIORITY = 32764  # before main (32766), as Istio
OUTBOUND_PORT = 15001
INBOUND_PLAIN_PORT = 15006
HBONE_PORT = 15008


def ruleset() -> str:
    """The ``table inet ambit-capture { ... }`` definition."""
    z = f"0x{ZTUNNEL_MARK:x}"
    c = f"0x{CONN_MARK:x}"
    m = f"0x{MARK_MASK:x}"
    keep = f"0x{0xFFFFFFFF & ~MARK_MASK:08x}"
    return f"""table inet {TABLE} {{
\tchain prerouting-mangle {{
\t\ttype filter hook prerouting priority -150; policy accept;
\t\tmeta mark & {m} == {z} ct mark set ct mark & {keep} | {c}
\t}}
\tchain output-mangle {{
\t\ttype route hook output priority -150; policy accept;
\t\tct mark & {m} == {c} meta mark set ct mark
\t}}
\tchain prerouting-nat {{
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tmeta l4proto != tcp accept
\t\tip saddr {PROBE_SOURCE} accept
\t\tip daddr 127.0.0.0/8 accept
\t\ttcp dport {HBONE_PORT} accept
\t\tmeta mark & {m} == {z} accept
\t\tmeta l4proto tcp redirect to :{INBOUND_PLAIN_PORT}
\t}}
\tchain output-nat {{
\t\ttype nat hook output priority -100; policy accept;
\t\tmeta l4proto != tcp accept
\t\tmeta mark & {m} == {z} accept
\t\tct mark & {m} == {c} accept
\t\tip daddr 127.0.0.0/8 accept
\t\toifname "lo" accept
\t\tip daddr {PROBE_SOURCE} accept
\t\tmeta l4proto tcp redirect to :{OUTBOUND_PORT}
\t}}
}}
"""


def apply_script() -> str:
    """``nft -f`` script: install or replace the table in one transaction."""
    return f"table inet {TABLE}\ndelete table inet {TABLE}\n" + ruleset()


def remove_script() -> str:
    """``nft -f`` script: delete the table; succeeds when it is already gone."""
    return f"table inet {TABLE}\ndelete table inet {TABLE}\n"


def _rule_spec() -> str:
    return f"fwmark 0x{CONN_MARK:x}/0x{MARK_MASK:x} pref {RULE_PRIORITY} lookup {ROUTE_TABLE}"


def route_commands() -> tuple[str, ...]:
    """``ip -batch`` lines for the transparent-upstream return path (inside the pod netns)."""
    return (f"rule add {_rule_spec()}", f"route replace local 0.0.0.0/0 dev lo table {ROUTE_TABLE}")


def route_remove_commands() -> tuple[str, ...]:
    return (f"rule del {_rule_spec()}", f"route flush table {ROUTE_TABLE}")


def apply(netns: str) -> None:
    """Install capture in a pod netns (idempotent): the return route first, then the nft table, so
    capture never runs without its return path."""
    _ip_batch(netns, route_remove_commands(), force=True)
    _ip_batch(netns, route_commands())
    _nft(netns, apply_script())


def remove(netns: str) -> None:
    """Remove capture from a pod netns (idempotent)."""
    _nft(netns, remove_script())
    _ip_batch(netns, route_remove_commands(), force=True)


def is_applied(netns: str) -> bool:
    proc = nsexec.run(netns, ["nft", "list", "table", "inet", TABLE], check=False)
    return proc.returncode == 0


def _nft(netns: str, script: str) -> None:
    nsexec.run(netns, ["nft", "-f", "-"], input_text=script)


def _ip_batch(netns: str, commands: tuple[str, ...], *, force: bool = False) -> None:
    argv = ["ip", "-n", netns, *(["-force"] if force else []), "-batch", "-"]
    proc = subprocess.run(
        argv, input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0 and not force:
        raise nsexec.NetnsError(f"in {netns}: ip batch failed: {proc.stderr.strip()}")
