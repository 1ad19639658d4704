"""merge: reactmesh's CRDT library and replication protocol.

Layout: ``gcounter`` (grow-only counter), ``keyed`` (map of G-counters for totals and per-second
windows, with per-peer delta extraction), ``hlc`` (hybrid logical clock), ``lww`` (last-writer-wins
register map for poll votes), ``maxmap`` (key -> max integer, for session watermarks), ``polls`` (poll specs and votes),
``replica`` (a node's named collections), ``gossip`` (per-peer acknowledged deltas and digests), ``digest``
(bucketed anti-entropy hashes), ``codec``
(typed, versioned envelopes), ``clock`` (system and fake clocks), ``errors``.

Every CRDT type offers the same small interface: ``new()``, ``value()``, a mutator returning the
delta, ``merge(other)`` (in place; a delta or a full state), ``encode()`` and ``decode()``.
"""
