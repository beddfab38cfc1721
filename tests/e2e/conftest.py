"""End-to-end tier: root, real network namespaces, real nftables; the guard is
:mod:`ambit.testing.e2e_guard` (shared with ``tests/chaos``)."""

from ambit.testing.e2e_guard import cluster_name, netns_guard, pytest_runtest_setup

__all__ = ["cluster_name", "netns_guard", "pytest_runtest_setup"]
