"""Generated reactmesh wire contract (see protos/reactmesh/v1/*.proto)."""
