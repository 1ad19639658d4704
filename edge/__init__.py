"""edge: reactmesh's client-facing ingest service and the client SDK.

Layout. The server: ``service`` (the Ingest servicer and the admission of each batch), ``validation``
(checks every client batch), ``auth`` (bearer tokens), ``ratelimit`` (per-viewer token buckets), ``ring``
(consistent hash of sessions onto aggregators), ``forwarder`` (one ordered stream per aggregator, many client
batches per message), ``config`` (EdgeConfig). Shared by the server, the SDK and region_node: ``limits``
(every wire rule: id forms, sizes, caps), ``errors`` (the gRPC status vocabulary, ServiceError), ``backoff``
(named reconnect backoff policies). The SDK is the subpackage ``sdk`` (ReactionClient, LiveView,
subscribe); it imports only the shared modules, never the server's.
"""
