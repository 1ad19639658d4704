"""The aggregator role: counts each client batch exactly once and commits it before acking.

``config`` (AggregatorConfig), ``core`` (dedupe by session watermark, on-demand group commit, acks after commit),
``service`` (the Aggregator.Forward servicer), ``store`` (SQLite: watermarks, G-counter slots, windows).
"""
