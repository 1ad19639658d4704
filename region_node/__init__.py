"""reactmesh.region_node: the roles of a region node, their stores and services, the process and the CLI.

Layout: ``aggregator/`` (exactly-once counting, group commit, its SQLite store), ``broadcaster/`` (smoothed,
capped frames to subscribers), ``polls/`` (live polls on the broadcaster), ``query`` (totals and history),
``history`` (the export: windows of many aggregator stores, merged, to Parquet),
``replication`` (the Gossip servicer and dialers), ``state`` (the named collections a region replicates),
``sqlite`` (WAL connection, versioned meta, rollback: one helper for every store), ``config`` (a node's TOML),
``metrics/`` (Prometheus collectors at the seams), ``node`` (runs roles in one asyncio process), ``devmesh``
(local meshes for ``reactmesh up``, benchmarks and tests; only the CLI imports it), ``cli/`` (``reactmesh``).
"""
