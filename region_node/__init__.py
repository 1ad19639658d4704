"""region_node: the aggregator, its SQLite store, the broadcaster, query/poll/admin services,
configuration, the process entry point and the ``reactmesh`` CLI.

Layout: ``store`` (SQLite: watermarks, G-counter slots, windows), ``aggregator`` (Aggregator
servicer: dedupe, group commit, acks), ``smoother`` (EMA-capped deltas), ``broadcaster``
(frames, subscribers, resume), ``query`` (totals and history), ``polls`` and ``poll_store`` (live polls), ``metrics``
(Prometheus collectors at the components' seams), ``replication`` (committed deltas
to the broadcaster and to peers), ``config``, ``process`` (runs roles in one asyncio process),
``mesh`` (local meshes: ``reactmesh up`` and test harnesses), ``loadgen``, ``watch``, ``demo``,
``poll_cli``, ``cli`` (``reactmesh serve|up|load|watch|poll|bench``).
"""
