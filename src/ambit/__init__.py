"""ambit: an ambient-mode service mesh in Python (ztunnel, HBONE, waypoints, control plane)."""

__version__ = "0.1.0"
