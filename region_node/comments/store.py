"""A broadcaster's comments on disk: one SQLite file (WAL) holding every comment, tombstone and pin it has merged.

Guarantees:

- ``save(delta)`` writes one delta of ``CommentSet.delta_since`` in ONE transaction. Comments and tombstones
  are immutable, so rows are inserted once (``INSERT OR IGNORE``; a comment is stored exactly once however
  often gossip brings it); a pin row is replaced by the delta's (current) register.
- ``page(stream, before, limit, viewer)`` reads history newest first by the primary key, left out: deleted
  ids, shadowed comments of other viewers, and every resend but the smallest id of a (stream, viewer,
  client_key). Cost O(limit) rows via the (stream_id, comment_id) index.
- ``load(floor_id)`` returns the comments and tombstones at or above ``floor_id`` and every pin: the hot window
  a restarted node puts back in memory; ``load_late(floor_ms)`` the late deletes stamped since ``floor_ms``.
- A late delete (of a comment already out of memory, ``LATE_DELETES``) is written twice in one transaction: a
  tombstone row, so history leaves the comment out, and a ``late_deletes`` row with its stamp, so a restarted
  node still passes it on to regions that have not heard of it.
- ``prune(floor_id, batch)`` deletes at most ``batch`` comments, tombstones and likes below ``floor_id`` (and late
  deletes whose time is over), by primary key range: the cost of a pass is bounded by what it deletes, never by
  the size of the file.

A schema version lives in ``meta``; a file of a newer build or another kind is refused.
"""

from __future__ import annotations

import asyncio
import os

import aiosqlite

from reactmesh.merge.comments import Comment, CommentSet
from reactmesh.merge.expiring import ExpiringMap
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.region_node.sqlite import StoreError, Synchronous, connect_wal, open_meta, write_transaction

SCHEMA_VERSION = 2
KIND = "comments"

_LATE_DELETES = (
    "CREATE TABLE late_deletes (comment_id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, wall_ms INTEGER NOT NULL,"
    " logical INTEGER NOT NULL, replica TEXT NOT NULL, until_ms INTEGER NOT NULL, actor TEXT NOT NULL) WITHOUT ROWID",
    "CREATE INDEX late_deletes_by_until ON late_deletes (until_ms)",
)
_MIGRATIONS = {1: _LATE_DELETES}
"""Version 1 files (no late deletes) gain the table."""

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE comments (comment_id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, viewer_id TEXT NOT NULL,"
    " text TEXT NOT NULL, reply_to TEXT NOT NULL, client_key TEXT NOT NULL, priority INTEGER NOT NULL,"
    " shadow INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX comments_by_stream ON comments (stream_id, comment_id)",
    "CREATE INDEX comments_by_key ON comments (stream_id, viewer_id, client_key, comment_id)",
    "CREATE TABLE tombstones (comment_id TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE likes (comment_id TEXT NOT NULL, viewer_id TEXT NOT NULL, PRIMARY KEY (comment_id, viewer_id))"
    " WITHOUT ROWID",
    "CREATE TABLE pins (stream_id TEXT PRIMARY KEY, wall_ms INTEGER NOT NULL, logical INTEGER NOT NULL,"
    " replica TEXT NOT NULL, comment_id TEXT NOT NULL) WITHOUT ROWID",
    *_LATE_DELETES,
)

_INSERT_COMMENT = (
    "INSERT OR IGNORE INTO comments (comment_id, stream_id, viewer_id, text, reply_to, client_key, priority, shadow)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_TOMB = "INSERT OR IGNORE INTO tombstones (comment_id) VALUES (?)"
_UPSERT_LATE = (
    "INSERT INTO late_deletes (comment_id, stream_id, wall_ms, logical, replica, until_ms, actor)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (comment_id) DO UPDATE SET stream_id = excluded.stream_id,"
    " wall_ms = excluded.wall_ms, logical = excluded.logical, replica = excluded.replica,"
    " until_ms = excluded.until_ms, actor = excluded.actor"
)
_INSERT_LIKE = "INSERT OR IGNORE INTO likes (comment_id, viewer_id) VALUES (?, ?)"
_UPSERT_PIN = (
    "INSERT INTO pins (stream_id, wall_ms, logical, replica, comment_id) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (stream_id) DO UPDATE SET wall_ms = excluded.wall_ms, logical = excluded.logical,"
    " replica = excluded.replica, comment_id = excluded.comment_id"
)
_COLUMNS = "c.comment_id, c.stream_id, c.viewer_id, c.text, c.reply_to, c.client_key, c.priority, c.shadow"
_PAGE = (
    f"SELECT {_COLUMNS} FROM comments c WHERE c.stream_id = ? AND c.comment_id < ?"
    " AND NOT EXISTS (SELECT 1 FROM tombstones t WHERE t.comment_id = c.comment_id)"
    " AND (c.shadow = 0 OR c.viewer_id = ?)"
    " AND (c.client_key = '' OR NOT EXISTS (SELECT 1 FROM comments d WHERE d.stream_id = c.stream_id"
    " AND d.viewer_id = c.viewer_id AND d.client_key = c.client_key AND d.comment_id < c.comment_id))"
    " ORDER BY c.comment_id DESC LIMIT ?"
)
_END = "\U0010ffff"
"""Sorts after every comment id: the ``before`` of a first page."""

Row = tuple[str, str, str, str, str, str, int, int]


def _comment(row: Row) -> Comment:
    cid, stream, viewer, text, reply_to, key, priority, shadow = row
    return Comment(cid, stream, viewer, text, reply_to, key, bool(priority), bool(shadow))


class CommentStore:
    """One broadcaster's comment file. Create with ``await CommentStore.open(path)``."""

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, synchronous: Synchronous = "NORMAL") -> CommentStore:
        """Open (creating if missing); SchemaVersionError for a newer file, StoreError for another kind."""
        path = os.fspath(path)
        conn = await connect_wal(path, synchronous)
        try:
            await open_meta(
                conn,
                path,
                what="comment store",
                schema=_SCHEMA,
                version=SCHEMA_VERSION,
                new_meta={},
                kind=KIND,
                migrations=_MIGRATIONS,
            )
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path)

    @property
    def path(self) -> str:
        return self._path

    def _live(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError(f"{self._path}: the comment store is closed")
        return self._conn

    async def close(self) -> None:
        """Close the file; idempotent."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    async def save(self, delta: CommentSet, late: ExpiringMap | None = None) -> int:
        """Write a delta of the comments (and one of the late deletes) in one transaction; return the rows it
        changed (0 for rows already stored)."""
        comments = []
        for cid in delta:
            c = delta.get(cid)
            assert c is not None
            comments.append(
                (cid, c.stream_id, c.viewer_id, c.text, c.reply_to, c.client_key, int(c.priority), int(c.shadow))
            )
        tombs = [(cid,) for cid in delta.tombstones()]
        lates = []
        for cid, r in (late.value() if late is not None else {}).items():
            tombs.append((cid,))
            lates.append((cid, r.note, r.stamp.wall_ms, r.stamp.logical, r.stamp.replica, r.until_ms, r.actor))
        likes = [(cid, viewer) for cid, viewers in delta.liked().items() for viewer in viewers]
        pins = []
        for stream_id, pin in delta.pins().items():
            pins.append((stream_id, pin.stamp.wall_ms, pin.stamp.logical, pin.stamp.replica, pin.comment_id))
        if not comments and not tombs and not pins and not likes:
            return 0
        return await write_transaction(
            self._live(),
            self._lock,
            [
                (_INSERT_COMMENT, comments),
                (_INSERT_TOMB, tombs),
                (_UPSERT_LATE, lates),
                (_UPSERT_PIN, pins),
                (_INSERT_LIKE, likes),
            ],
        )

    async def stream_of(self, comment_id: str) -> str | None:
        """The stream of a stored comment, or None when the file does not hold it."""
        async with self._lock:
            rows = await self._live().execute_fetchall(
                "SELECT stream_id FROM comments WHERE comment_id = ?", (comment_id,)
            )
        return next((str(r[0]) for r in rows), None)

    async def page(self, stream_id: str, before: str, limit: int, viewer_id: str) -> list[Comment]:
        """Up to ``limit`` visible comments of ``stream_id`` with ids below ``before`` ("" = newest), newest first."""
        async with self._lock:
            rows = await self._live().execute_fetchall(_PAGE, (stream_id, before or _END, viewer_id, limit))
        return [_comment(r) for r in rows]

    async def load(self, floor_id: str) -> CommentSet:
        """The comments and tombstones at or above ``floor_id``, and every pin."""
        async with self._lock:
            conn = self._live()
            rows = await conn.execute_fetchall(
                f"SELECT {_COLUMNS} FROM comments c WHERE c.comment_id >= ?", (floor_id,)
            )
            tombs = await conn.execute_fetchall("SELECT comment_id FROM tombstones WHERE comment_id >= ?", (floor_id,))
            pins = await conn.execute_fetchall("SELECT stream_id, wall_ms, logical, replica, comment_id FROM pins")
            likes = await conn.execute_fetchall(
                "SELECT comment_id, viewer_id FROM likes WHERE comment_id >= ?", (floor_id,)
            )
        out = CommentSet()
        for row in rows:
            out.add(_comment(row))
        for (cid,) in tombs:
            out.delete(cid)
        for stream_id, wall_ms, logical, replica, cid in pins:
            out.set_pin(stream_id, cid, HlcTimestamp(wall_ms, logical, replica))
        for cid, viewer in likes:
            out.like(cid, viewer)
        return out

    async def load_late(self, floor_ms: int) -> ExpiringMap:
        """The late deletes stamped at or after ``floor_ms`` (wall ms)."""
        async with self._lock:
            rows = await self._live().execute_fetchall(
                "SELECT comment_id, stream_id, wall_ms, logical, replica, until_ms, actor FROM late_deletes"
                " WHERE wall_ms >= ?",
                (floor_ms,),
            )
        out = ExpiringMap()
        for cid, stream_id, wall_ms, logical, replica, until_ms, actor in rows:
            out.set(cid, until_ms, HlcTimestamp(wall_ms, logical, replica), stream_id, actor)
        return out

    async def prune(self, floor_id: str, batch: int, now_ms: int = 0) -> int:
        """Delete at most ``batch`` comments, likes and tombstones below ``floor_id``, and ``batch`` late deletes
        whose ``until_ms`` is before ``now_ms``; return the rows deleted."""
        return await write_transaction(
            self._live(),
            self._lock,
            [
                (
                    "DELETE FROM comments WHERE comment_id IN"
                    " (SELECT comment_id FROM comments WHERE comment_id < ? ORDER BY comment_id LIMIT ?)",
                    [(floor_id, batch)],
                ),
                (
                    "DELETE FROM likes WHERE comment_id IN"
                    " (SELECT comment_id FROM likes WHERE comment_id < ? ORDER BY comment_id LIMIT ?)",
                    [(floor_id, batch)],
                ),
                (
                    "DELETE FROM tombstones WHERE comment_id IN"
                    " (SELECT comment_id FROM tombstones WHERE comment_id < ? ORDER BY comment_id LIMIT ?)",
                    [(floor_id, batch)],
                ),
                (
                    "DELETE FROM late_deletes WHERE comment_id IN"
                    " (SELECT comment_id FROM late_deletes WHERE until_ms < ? ORDER BY until_ms LIMIT ?)",
                    [(now_ms, batch)],
                ),
            ],
        )

    async def count(self) -> int:
        """Comments stored (for tests and statistics)."""
        async with self._lock:
            rows = await self._live().execute_fetchall("SELECT COUNT(*) FROM comments")
        return int(next(iter(rows))[0])
