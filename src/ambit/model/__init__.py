"""Layer L0: frozen domain values (identities, placements, addresses, workloads, services, policy).

Stdlib only, no I/O. Every other layer builds on these types.
"""
