"""proxy: what every proxy (ztunnel, waypoint) shares; above `net`/`xds`, below `ztunnel`/`waypoint`.

| module | owns |
|---|---|
| `accesslog` | one JSON line per connection on `ambit.ztunnel.access` |
| `certs` | `WorkloadCredentials`: each identity's certificate and cached TLS contexts |
| `sockets` | `SocketFactory`: where sockets come from (SO_ORIGINAL_DST, marks, transparent binds) |
| `netns_sockets` | `NetnsSocketFactory`: sockets made inside a pod's network namespace |
| `cache` | `ProxyCache`: the last good xDS state and certificates on disk |
| `heap` | `HeapTrimmer`: gives freed heap back to the kernel |
| `config_dump` | `ConfigDump`: the typed read model of what a proxy believes (`to_json`, `from_json`) |
| `admin` | `AdminServers`: admin (/config_dump, /quitquitquit), metrics, readiness; fed by callables |
| `state_waiter` | `StateWaiter`: the sync gate (config synced and holding a workload), with a timed wait |
| `control_plane` | `ControlPlaneLink`: node credential, xDS-fed store, CA client, cache restore, write-back |
| `records` | `ConnectionRecord`: one per connection; metrics labels and the access-log line come from it |
"""
