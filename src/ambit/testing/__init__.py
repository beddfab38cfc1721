"""Helpers for tests: a ready-made PKI, a controllable clock, in-memory peers and builders.

Not used by production code paths; may import from any layer.
"""
