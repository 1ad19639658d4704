"""Per-second windows beyond memory: sealing (``sealer``), reading stored history and its digests (``digests``)
and repairing it from peers in bounded rounds (``sync``)."""
