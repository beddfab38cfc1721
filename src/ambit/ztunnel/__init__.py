"""The per-node L4 proxy: capture listeners, outbound, inbound, pool use, policy, metrics, admin.

Arrives with issue 4; the package exists now so that the layer contracts in
pyproject.toml hold from its first line.
"""
