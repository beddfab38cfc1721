"""The local runtime (DESIGN §3): a cluster built from Linux network namespaces on one machine.

Network layer:

- :mod:`ambit.runtime.netplan`: pure. Cluster layout → structured plan (names, addresses, routes, steps).
- :mod:`ambit.runtime.netns`: applies plans with ``ip``/``nft``; owns the per-cluster state file; teardown.
- :mod:`ambit.runtime.capture`: the ambient pod capture ruleset (nftables + policy routing).
- :mod:`ambit.runtime.services`: the node's service DNAT table for non-mesh pods (the kube-proxy role).
- :mod:`ambit.runtime.nsexec`: run a command, or create a socket, inside a network namespace.
- :mod:`ambit.runtime.hostcheck`: snapshot of the host namespace, to prove nothing leaked into it.

Cluster layer:

- :mod:`ambit.runtime.daemon`: the thin runtime daemon; starts the controllers of
  :mod:`ambit.runtime.controllers` (scheduler, per-node kubelet, kube-proxy, ztunnels, store host,
  command server) and runs their reconcile pass; :mod:`ambit.runtime.bootstrap`: what it writes at start.
- :mod:`ambit.runtime.handle`: :class:`ClusterHandle`, one Python handle on a running cluster (pods,
  exec, stop/start/kill/restart, status) for the CLI, the bench, the tests and the demo.
- :mod:`ambit.runtime.cluster`: `ambit up` / `down`.

The runtime is the only layer allowed to start subprocesses.
"""
