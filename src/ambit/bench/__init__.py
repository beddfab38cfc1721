"""Benchmarks: side-by-side measurements of ambit's data path, every box a separate OS process.

* ``hbone``: the plan and numbers of ``ambit bench hbone`` (one HBONE hop vs TCP and TLS relays);
* ``target``, ``proxies``, ``load``: the child processes (target server, proxies A/B, load client);
* ``child`` / ``procs``: the child and parent halves of the process protocol (JSON lines on pipes);
* ``report``: tables, the machine description and the BENCHMARKS.md section.
"""
