"""Moderation on the broadcaster: mutes, drains and abuse flags, replicated to every region (``book``), kept in
SQLite (``store``), served as ``reactmesh.v1.Admin`` (``service``)."""
