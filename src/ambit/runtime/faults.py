"""Network faults on the local runtime: cut a node off the fabric, heal it (chaos, node liveness tests).

**What a cut is.** One nftables table of family ``bridge`` per cut node, ``ambit_cut_n<i>``, in the
cluster's fabric namespace ``ambit-C-fabric``, on the fabric bridge ``br0``'s port ``n<i>`` (the veth
whose peer is node i's ``eth0``, its only link to anything outside itself). The bridge does not pass
frames to iptables (``bridge-nf-call-*=0``), so the cut uses the bridge family's own hooks, which see
every frame on a port whatever its protocol (IPv4, ARP, anything)::

    table bridge ambit_cut_n2 {
        chain forward {    # frames between ports: node 2 <-> other nodes (floods included)
            type filter hook forward priority filter; policy accept;
            iifname "n2" counter drop
            oifname "n2" counter drop
        }
        chain input {      # node 2 -> the bridge's own addresses (172.30.0.1: the store's listener)
            type filter hook input priority filter; policy accept;
            iifname "n2" counter drop
        }
        chain output {     # the bridge's own addresses -> node 2
            type filter hook output priority filter; policy accept;
            oifname "n2" counter drop
        }
    }

Every frame that enters from ``n<i>`` is forwarded (``forward``) or delivered to the bridge itself
(``input``); every frame that leaves through ``n<i>`` comes from another port (``forward``) or from the
fabric namespace's own stack (``output``): the three hooks see them all (checked against the kernel:
each chain's counter rises for its path). A cut drops them silently, both ways: no RST, no ICMP from the
fabric, so a TCP connection across it hangs (its segments are retransmitted, and it carries on after a
heal) exactly as on a real partition. The counters say how much was dropped (``nft list table bridge
ambit_cut_n<i>`` in the fabric namespace).

**What a cut severs:** node i from every other node (its pods from theirs, both ways; service traffic
DNATed to an endpoint across the cut) and from the fabric bridge's own addresses, i.e. the store's
heartbeat listener ``172.30.0.1:6443``: the node stops renewing its Lease and goes ``NotReady`` after
``--node-grace``. Also node i's ztunnel's HBONE to other nodes and its xDS streams to control-plane
replicas on other nodes (it dials their pod IPs on 15012), and theirs to a replica on node i.

**What it does not sever** (this runtime, not a real cluster): everything inside node i (its pods
talking to each other, to themselves, to ``localhost``, the node's own probes of its pods, services
whose endpoint is on node i), and everything that does not use the fabric at all: the runtime daemon
runs every node's kubelet role and reaches every pod through namespaces and filesystem sockets, so the
cut node's processes keep running, `ambit exec`/``ClusterHandle.exec`` still work there, and a
control-plane replica on it still reads the store through its Unix socket.

The nodes' own kernels then behave as on a real L2 partition: a node's ARP entry for the cut node
stays valid for 15-45 s without confirmation (measured: resolution failed after about 35 s of a cut),
then resolution fails, and from then on a new connection across the cut waits 3 s for ARP and fails
with "no route to host" (the sending node's own ICMP host unreachable, not the fabric's) instead of
timing out. Before that, and for any timeout under 3 s, connections across a cut time out.

**State lives only in the kernel.** There is no state file: :func:`cuts` lists the tables. Several
nodes may be cut at once (one table each). Cutting a cut node again replaces its table with the same
one (counters restart); healing deletes exactly that table, and healing an uncut node does nothing.
`ambit down` deletes the fabric namespace, and the tables with it: nothing is left behind.
Nothing here touches the host's namespace.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from ambit.runtime import netplan, nsexec

FAMILY = "bridge"
TABLE_PREFIX = "ambit_cut_"
_TABLE_RE = re.compile(re.escape(TABLE_PREFIX) + r"n([1-9][0-9]*)")


class FaultError(RuntimeError):
    """A fault cannot be applied or removed (cluster not up, bad node, nft failed)."""


# --- pure: names and rules ------------------------------------------------------------------------


def table_name(index: int) -> str:
    """``ambit_cut_n<i>``: the table that cuts node ``index`` (named after its fabric port)."""
    _check_index(index)
    return f"{TABLE_PREFIX}{netplan.fabric_port(index)}"


def node_of_table(name: str) -> int | None:
    """The node index a cut table belongs to, None for any other table name."""
    match = _TABLE_RE.fullmatch(name)
    return int(match.group(1)) if match else None


def ruleset(index: int) -> str:
    """The ``table bridge ambit_cut_n<i> { ... }`` definition: drop every frame to or from port ``n<i>``."""
    table = table_name(index)
    port = netplan.fabric_port(index)
    hook = "type filter hook {} priority filter; policy accept;"
    return f"""table {FAMILY} {table} {{
\tchain forward {{
\t\t{hook.format("forward")}
\t\tiifname "{port}" counter drop
\t\toifname "{port}" counter drop
\t}}
\tchain input {{
\t\t{hook.format("input")}
\t\tiifname "{port}" counter drop
\t}}
\tchain output {{
\t\t{hook.format("output")}
\t\toifname "{port}" counter drop
\t}}
}}
"""


def cut_script(index: int) -> str:
    """``nft -f`` script: install (or replace) node ``index``'s cut table, in one transaction.

    ``table bridge X`` first makes the following ``delete`` valid when the table does not exist yet."""
    table = table_name(index)
    return f"table {FAMILY} {table}\ndelete table {FAMILY} {table}\n" + ruleset(index)


def heal_script(index: int) -> str:
    """``nft -f`` script: delete node ``index``'s cut table; succeeds when it is already gone."""
    table = table_name(index)
    return f"table {FAMILY} {table}\ndelete table {FAMILY} {table}\n"


def parse_cuts(nft_json: str) -> set[int]:
    """The node indexes cut, from ``nft -j list tables`` output (tables of other families or names
    are ignored)."""
    text = nft_json.strip()
    if not text:
        return set()
    found: set[int] = set()
    for entry in json.loads(text).get("nftables", []):
        table = entry.get("table") if isinstance(entry, dict) else None
        if not table or table.get("family") != FAMILY:
            continue
        index = node_of_table(str(table.get("name", "")))
        if index is not None:
            found.add(index)
    return found


def _check_index(index: int) -> None:
    if not 1 <= index <= netplan.MAX_NODES:
        raise FaultError(f"node index {index} out of range 1..{netplan.MAX_NODES}")


# --- executing: in the cluster's fabric namespace ---------------------------------------------------


def fabric_up(cluster: str) -> bool:
    """Whether the cluster's fabric namespace exists (``ambit up`` made it, ``ambit down`` not yet
    deleted it)."""
    return os.path.exists(nsexec.netns_path(netplan.fabric_netns(cluster)))


def cuts(cluster: str) -> set[int]:
    """The indexes of the nodes of ``cluster`` cut off the fabric now (read from the kernel)."""
    proc = _nft(cluster, ["nft", "-j", "list", "tables", FAMILY])
    return parse_cuts(proc.stdout)


def cut(cluster: str, index: int) -> bool:
    """Cut node ``index`` off the fabric (idempotent). True when it was not cut before."""
    _check_index(index)
    was_cut = index in cuts(cluster)
    _nft(cluster, ["nft", "-f", "-"], cut_script(index))
    return not was_cut


def heal(cluster: str, index: int) -> bool:
    """Remove node ``index``'s cut (idempotent). True when it was cut."""
    _check_index(index)
    was_cut = index in cuts(cluster)
    _nft(cluster, ["nft", "-f", "-"], heal_script(index))
    return was_cut


def _nft(cluster: str, argv: list[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
    netns = netplan.fabric_netns(cluster)
    if not fabric_up(cluster):
        raise FaultError(f"cluster {cluster} is not up (no namespace {netns})")
    try:
        return nsexec.run(netns, argv, input_text=script)
    except nsexec.NetnsError as exc:
        raise FaultError(str(exc)) from exc
