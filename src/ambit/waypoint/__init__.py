"""The L7 waypoint proxy (``ambit waypoint run``): HBONE in, HTTP/1.1, HTTP/2, gRPC and WebSocket
through, per-request routing to the destination's endpoints, L7 AuthorizationPolicy, Istio's request
metrics. ``app`` is the process; ``server`` one HBONE tunnel; ``router`` one request; the rest are the
protocol edges (see ARCHITECTURE.md, "The waypoint").
"""
