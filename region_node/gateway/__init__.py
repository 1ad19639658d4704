"""The gateway role: browsers reach reactmesh over HTTP and WebSocket JSON.

Layout: ``config`` (the ``[gateway]`` section), ``wire`` (protobuf <-> JSON, gRPC status -> HTTP status),
``fanout`` (one upstream ``Broadcast.Subscribe`` per stream, fanned out to bounded, coalescing socket queues),
``app`` (the Starlette routes and the uvicorn server), ``openapi`` (the served API document), ``static/`` (the
overlay page). The gateway holds no counts of its own: taps go to the region's edge (``Ingest.Send``), reads and
votes to its broadcaster, so every guarantee and policy is the gRPC one.
"""
