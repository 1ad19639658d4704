"""A broadcaster's moderation on disk: one SQLite file (WAL) holding its MUTES, DRAINS and FLAGS maps.

Guarantees:

- ``save(deltas)`` writes deltas of ``ExpiringMap.delta_since`` (collection name -> delta) in ONE transaction:
  each named key's row is replaced by the delta's record (a delta carries a key's current record), each floor that
  rose is stored and the rows stamped before it deleted, so the file mirrors the maps as of the last save and
  holds no more rows than the maps do.
- ``load()`` returns exactly the maps the saved deltas add up to, decoded through the CRDT codec (a corrupt row
  is refused with StoreError rather than misread).
- Durability: WAL with ``synchronous=FULL`` by default, because a mute is answered only after it is saved. A
  schema version lives in ``meta``; a file written by a newer build, or one that is not a moderation store, is
  refused.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import aiosqlite

from reactmesh.merge.codec import seal_as
from reactmesh.merge.errors import DecodeError
from reactmesh.merge.expiring import ExpiringMap
from reactmesh.region_node.sqlite import StoreError, Synchronous, connect_wal, open_meta, write_transaction
from reactmesh.v1 import crdt_pb2

SCHEMA_VERSION = 1
KIND = "moderation"

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE records (collection TEXT NOT NULL, key TEXT NOT NULL, wall_ms INTEGER NOT NULL,"
    " logical INTEGER NOT NULL, replica TEXT NOT NULL, until_ms INTEGER NOT NULL, note TEXT NOT NULL,"
    " actor TEXT NOT NULL, PRIMARY KEY (collection, key)) WITHOUT ROWID",
    "CREATE TABLE floors (collection TEXT PRIMARY KEY, floor_ms INTEGER NOT NULL) WITHOUT ROWID",
)
_UPSERT = (
    "INSERT INTO records (collection, key, wall_ms, logical, replica, until_ms, note, actor)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (collection, key) DO UPDATE SET wall_ms = excluded.wall_ms,"
    " logical = excluded.logical, replica = excluded.replica, until_ms = excluded.until_ms, note = excluded.note,"
    " actor = excluded.actor"
)
_FLOOR = (
    "INSERT INTO floors (collection, floor_ms) VALUES (?, ?)"
    " ON CONFLICT (collection) DO UPDATE SET floor_ms = max(floor_ms, excluded.floor_ms)"
)
_DROP_BELOW = "DELETE FROM records WHERE collection = ? AND wall_ms < ?"

Row = tuple[str, str, int, int, str, int, str, str]


class ModerationStore:
    """One broadcaster's moderation file. Create with ``await ModerationStore.open(path)``."""

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, synchronous: Synchronous = "FULL") -> ModerationStore:
        """Open (creating if missing) the store at ``path``; SchemaVersionError or StoreError for a foreign file."""
        path = os.fspath(path)
        conn = await connect_wal(path, synchronous)
        try:
            await open_meta(
                conn, path, what="moderation store", schema=_SCHEMA, version=SCHEMA_VERSION, new_meta={}, kind=KIND
            )
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path)

    @property
    def path(self) -> str:
        return self._path

    async def close(self) -> None:
        """Close the file; idempotent."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    async def save(self, deltas: Mapping[str, ExpiringMap]) -> int:
        """Write the deltas (collection -> delta) in one transaction; return the records written."""
        rows: list[Row] = []
        floors: list[tuple[str, int]] = []
        for name, delta in deltas.items():
            if delta.floor_ms:
                floors.append((name, delta.floor_ms))
            for key, r in delta.value().items():
                s = r.stamp
                rows.append((name, key, s.wall_ms, s.logical, s.replica, r.until_ms, r.note, r.actor))
        if not rows and not floors:
            return 0
        await write_transaction(self._live(), self._lock, [(_FLOOR, floors), (_DROP_BELOW, floors), (_UPSERT, rows)])
        return len(rows)

    async def load(self, collections: tuple[str, ...]) -> dict[str, ExpiringMap]:
        """The saved maps of ``collections`` (empty maps for those never saved); StoreError for a corrupt row."""
        async with self._lock:
            conn = self._live()
            floors = dict(await conn.execute_fetchall("SELECT collection, floor_ms FROM floors"))
            records = await conn.execute_fetchall(
                "SELECT collection, key, wall_ms, logical, replica, until_ms, note, actor FROM records"
            )
        bodies = {name: crdt_pb2.ExpiringMapState(floor_ms=floors.get(name, 0)) for name in collections}
        for name, key, wall_ms, logical, replica, until_ms, note, actor in records:
            body = bodies.get(name)
            if body is None:
                continue  # a collection this build no longer keeps
            entry = body.entries.add(key=key, until_ms=until_ms, note=note, actor=actor)
            entry.stamp.wall_ms, entry.stamp.logical, entry.stamp.replica = wall_ms, logical, replica
        try:
            return {name: ExpiringMap.decode(seal_as(ExpiringMap.TAG, body)) for name, body in bodies.items()}
        except (DecodeError, TypeError, ValueError) as exc:
            raise StoreError(f"{self._path}: corrupt moderation rows: {exc}") from exc

    def _live(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError(f"{self._path}: moderation store is closed")
        return self._conn
