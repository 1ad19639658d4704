"""Helpers shared by the suites (fixtures are in tests/conftest.py).

``polling`` (``eventually``: wait for a condition on real sockets and processes), ``edge`` (a stand-in
aggregator and an edge rig on loopback), ``metered`` (one region with /metrics, scraped over HTTP), ``k8s`` (the
rendered manifests read as a cluster would), ``netns`` (regions in network namespaces, cuts and heals),
``regions`` (their processes and simulated viewers, ground truth), ``totals`` (merged totals over Query,
convergence and replication lag). The TCP delay proxy shared with the benchmarks is
``reactmesh.bench.delay_proxy``.
"""
