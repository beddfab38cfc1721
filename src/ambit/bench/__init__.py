"""Benchmarks: side-by-side measurements of ambit's data path, every box a separate OS process.

* ``hbone``: the plan and numbers of ``ambit bench hbone`` (one HBONE hop vs TCP and TLS relays);
* ``target``, ``proxies``, ``load``: the child processes (target server, proxies A/B, load client);
* ``child`` / ``procs``: the child and parent halves of the process protocol (JSON lines on pipes);
* ``report``: tables, the machine description and the BENCHMARKS.md section.
* ``mesh``: ``ambit bench mesh`` (no mesh / ambit L4 / stunnel L4 / ambit L7 / nginx L7 on a 2-node
  cluster): ``mesh_cluster`` drives the cluster through the CLI, ``mesh_configs`` the L4 rows and the
  stunnel machinery, ``mesh_waypoint`` the ambit L7 row (one waypoint replica on node 2), ``mesh_nginx`` the
  nginx L7 peer, ``mesh_workloads`` the tools, ``mesh_cost`` CPU and PSS from /proc, ``mesh_idle`` the
  idle-connection holder, ``mesh_report`` (with ``mesh_format``) the output.
"""
