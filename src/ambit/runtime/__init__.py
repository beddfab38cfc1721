"""The local runtime (DESIGN §3): a cluster built from Linux network namespaces on one machine.

Network layer:

- :mod:`ambit.runtime.netplan`: pure. Cluster layout → structured plan (names, addresses, routes, steps).
- :mod:`ambit.runtime.netns`: applies plans with ``ip``/``nft``; owns the per-cluster state file; teardown.
- :mod:`ambit.runtime.capture`: the ambient pod capture ruleset (nftables + policy routing).
- :mod:`ambit.runtime.services`: the node's service DNAT table for non-mesh pods (the kube-proxy role).
- :mod:`ambit.runtime.nsexec`: run a command, or create a socket, inside a network namespace.
- :mod:`ambit.runtime.hostcheck`: snapshot of the host namespace, to prove nothing leaked into it.

The runtime is the only layer allowed to start subprocesses.
"""
