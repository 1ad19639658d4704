"""merge: reactmesh's CRDT library and replication protocol; it knows no application's collection names.

Layout: ``contract`` (the Protocols every CRDT keeps: ``CRDT`` and ``Replicated``), ``deltalog`` (the
per-key version log behind every ``delta_since``), ``tags`` (the type-tag table), ``codec`` (typed,
versioned envelopes), ``gcounter`` (grow-only counter), ``keyed`` (map of G-counters), ``maxmap`` (key
-> max integer), ``lww`` (last-writer-wins register map with a close marker), ``polls`` (poll specs and
votes, one CRDT), ``hlc`` (hybrid logical clock), ``replica`` (a node's named collections, supplied by
the caller), ``gossip`` (per-peer acknowledged deltas, digests; routes and origin tracking by
collection name, supplied by the caller), ``digest`` (bucketed anti-entropy hashes), ``clock`` (system
and fake clocks), ``errors``.

Every CRDT type offers the same small interface (``merge.contract``): ``new()``, ``value()``,
mutators returning the delta, ``merge(other)`` (in place; a delta or a full state), ``copy()``,
``encode()`` and ``decode()``; the replicated ones add ``version``, ``delta_since`` and ``len()``.
"""
