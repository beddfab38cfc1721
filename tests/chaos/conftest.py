"""Chaos tier (the reduced suite in `make test`; `make chaos` runs the full one): root, real network
namespaces, real nftables; the guard is :mod:`ambit.testing.e2e_guard` (shared with ``tests/e2e``)."""

from ambit.testing.e2e_guard import cluster_name, netns_guard, pytest_runtest_setup

__all__ = ["cluster_name", "netns_guard", "pytest_runtest_setup"]
