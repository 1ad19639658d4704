"""region_node: the aggregator, its SQLite store, the broadcaster, query/poll/admin services,
configuration, the process entry point and the ``reactmesh`` CLI.

Layout: ``store`` (SQLite: watermarks, G-counter slots, windows), ``aggregator`` (Aggregator
servicer: dedupe, group commit, acks), ``smoother`` (EMA-capped deltas), ``broadcaster``
(frames, subscribers, resume), ``query`` (totals and history), ``replication`` (committed deltas
to the broadcaster and to peers), ``config``, ``process`` (runs roles in one asyncio process),
``cli`` (``reactmesh serve|up|load|watch``).
"""
