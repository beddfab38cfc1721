"""proxy: what every proxy (ztunnel, waypoint) shares; above `net`/`xds`, below `ztunnel`/`waypoint`.

| module | owns |
|---|---|
| `accesslog` | one JSON line per connection on `ambit.ztunnel.access` |
"""
