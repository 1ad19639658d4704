"""reactmesh benchmark scenarios."""
