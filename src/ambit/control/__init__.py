"""The control plane (istiod role): registry, translation, delta xDS, CA service, waypoint controller.

Arrives with issue 3; the package exists now so that the layer contracts in
pyproject.toml hold from its first line.
"""
