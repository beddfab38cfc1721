"""The runtime daemon's controllers, split as Kubernetes splits its node and cluster roles; each
object has one job and the thin :mod:`ambit.runtime.daemon` starts them and runs their passes.

- :mod:`.view`: the informer cache every controller reads (:class:`ClusterView`), and ``poll``.
- :mod:`.scheduling`: the scheduler: Deployments → Pods, unbound Pods → ``spec.nodeName``.
- :mod:`.kubelet`: one per node: pod network, capture + ZDS handoff, processes, probes, status, hosts.
- :mod:`.probes`: a pod's readiness checks (which ports, TCP or HTTP) and running them from the node.
- :mod:`.service_proxy`: kube-proxy: the service DNAT tables on every node, the pods' hosts files.
- :mod:`.ztunnels`: the node agents (ZDS servers) and one ztunnel per node: start, overlapping restart.
- :mod:`.store_host`: the embedded store server (stopped and started by command).
- :mod:`.commands`: the command server on ``daemon.sock`` (`ambit stop|start|kill|restart`).
"""
