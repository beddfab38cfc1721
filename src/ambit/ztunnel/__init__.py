"""ztunnel: the per-node L4 proxy of ambient mode (DESIGN §1, §2; facts §1).

| module | owns |
|---|---|
| `config` | `ZtunnelConfig`: ports, mark, cluster CIDRs, timeouts, drain deadline |
| `metrics` | Istio's `istio_tcp_*` metrics in a registry per ztunnel |
| `telemetry` | `end_connection`: a connection's metrics closed and access-log line written, any direction |
| `connections` | live inbound connections, re-authorized on every config change |
| `outbound` | 15001: original destination → plan → HBONE (pool, the pod's cert) or passthrough; retries |
| `inbound` | 15008: HBONE CONNECT → L4 authorization → app |
| `inbound_plain` | 15006: plaintext capture → authorization (STRICT refuses) → app |
| `inputs` | `PodInfo`, `PodListeners`, `ProxyInputs` (shared parts) |
| `proxy` | `PodProxy`: one pod's three listeners, start (fail closed), drain, close |
| `manager` | `Ztunnel`: the node's proxy, a `PodProxy` per pod uid |
"""
