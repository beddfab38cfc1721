"""What every proxy shares (ztunnel and waypoint)."""
