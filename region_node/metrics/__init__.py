"""Prometheus metrics of a region node, collected at the components' seams (see ``node`` for what each lag means).

``node`` (NodeMetrics: one registry per process, attaches the collectors), ``edge``, ``aggregator``,
``broadcaster``, ``gossip`` (one collector per seam), ``families`` (buckets and a lock-free histogram),
``server`` (``GET /metrics`` on the event loop).
"""
