"""edge: reactmesh's client-facing ingest and the client SDK.

Layout: ``validation`` (checks every client batch), ``ratelimit`` (per-viewer token buckets),
``ring`` (consistent hash of sessions onto aggregators), ``forwarder`` (one ordered bidirectional
stream per aggregator, many client batches per message), ``service`` (the Ingest servicer),
``config`` (EdgeConfig), ``errors`` (the service error vocabulary), ``client`` (ReactionClient SDK).
"""
