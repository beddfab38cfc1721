"""The L7 waypoint proxy: HTTP routing, L7 policy, retries, timeouts, request metrics.

Arrives with a later issue; the package exists now so that the layer contracts in
pyproject.toml hold from its first line.
"""
