"""A node's SQLite store: session watermarks, G-counter slots and per-second windows, one file per node.

Guarantees:

- ``commit()`` writes watermarks and slots in ONE transaction: after a crash either all of it is on
  disk or none of it is. Slot and watermark upserts keep the maximum, so the on-disk state is itself
  a join (writing an old value again, or a peer's slot, never moves anything backwards).
- Durability: WAL mode with ``synchronous=FULL`` by default, so the WAL is fsynced at every commit
  and a committed transaction survives a process kill -9 *and* a power loss. With ``NORMAL`` a
  commit survives kill -9 but a power loss may drop the last transactions. We measured FULL as
  cheap here: the aggregator commits on demand, at most once per ``commit_interval_ms`` (up to 40/s
  per aggregator under load), and pays one fsync per commit, on aiosqlite's thread, not on the event
  loop (2,000 watermark upserts per commit: ~7 ms with either setting on the reference VM). Since an ack
  to the edge promises durability, FULL is the default.
- A schema version lives in ``meta``; a file written by a newer build is refused with
  ``SchemaVersionError`` rather than misread, and a file that is not a reactmesh store is refused.
- ``node_generation()`` is a random id created with the file. A node that lost its disk gets a new
  one, which is what lets it take a fresh G-counter replica id instead of reusing slots it can no
  longer read (see region_node.aggregator.core).

Tables:

- ``watermarks(session_id, seq, updated_ms)``: highest applied seq per client session.
  Deliberately no index on ``updated_ms``: it would cost ~30% on the hottest write (one row per
  session per tick). Idle sessions are pruned by key (the caller knows which expired) or, at
  start-up, by one full scan.
- ``counters(collection, key, replica, count)`` WITHOUT ROWID: KeyedGCounter slots of every
  collection but windows, keys encoded with ``merge.keyed.encode_key`` (totals and anything added
  later, so a new collection needs no migration).
- ``windows(stream, start_s, emoji, replica, count)`` WITHOUT ROWID: the ``windows`` collection,
  structured rather than encoded, so a history query and a history bucket (one stream, one minute)
  are primary-key range scans and retention is one indexed ``DELETE ... WHERE start_s < ?``.
- ``window_buckets(minute, stream, replica, changed)`` WITHOUT ROWID: which (minute, stream,
  replica) buckets hold windows, listed by minute for history anti-entropy
  (``region_node.windows.digests``). ``changed`` is a mark from a counter of this file, set when a
  window is written after its minute was sealed (a late delta or a repair), so peers can ask for
  the buckets that changed since they last looked; 0 otherwise.

Schema version 2 (this one) reordered the windows key and added window_buckets; a version 1 file
is migrated when opened.

Every table holds the slots of any replica, so a node may persist merged peer state as well as its
own. All methods are coroutines serialised by one lock; the store is not shared between processes
beyond what SQLite's WAL locking allows (one writer at a time).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterable, Mapping

import aiosqlite

from reactmesh.merge.keyed import Key, KeyedGCounter, decode_key, encode_key
from reactmesh.region_node.sqlite import (
    Statement,
    StoreError,
    Synchronous,
    connect_wal,
    open_meta,
    write_transaction,
)
from reactmesh.region_node.state import TOTALS, WINDOWS

SCHEMA_VERSION = 2
OLDEST_READABLE_VERSION = 1
"""Readers of the windows table by column name (the export) can read files of this version and later."""

Slot = tuple[str, Key, str, int]
"""(collection, key, replica, count): one G-counter slot."""

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE watermarks (session_id BLOB PRIMARY KEY, seq INTEGER NOT NULL CHECK (seq >= 0),"
    " updated_ms INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE counters (collection TEXT NOT NULL, key TEXT NOT NULL, replica TEXT NOT NULL,"
    " count INTEGER NOT NULL CHECK (count >= 0), PRIMARY KEY (collection, key, replica)) WITHOUT ROWID",
    "CREATE TABLE windows (stream TEXT NOT NULL, start_s INTEGER NOT NULL, emoji TEXT NOT NULL,"
    " replica TEXT NOT NULL, count INTEGER NOT NULL CHECK (count >= 0),"
    " PRIMARY KEY (stream, start_s, emoji, replica)) WITHOUT ROWID",
    "CREATE INDEX windows_by_start ON windows (start_s)",
    "CREATE TABLE window_buckets (minute INTEGER NOT NULL, stream TEXT NOT NULL, replica TEXT NOT NULL,"
    " changed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (minute, stream, replica)) WITHOUT ROWID",
    "CREATE INDEX window_buckets_changed ON window_buckets (changed) WHERE changed > 0",
)

_MIGRATIONS = {
    1: (
        "CREATE TABLE windows_v2 (stream TEXT NOT NULL, start_s INTEGER NOT NULL, emoji TEXT NOT NULL,"
        " replica TEXT NOT NULL, count INTEGER NOT NULL CHECK (count >= 0),"
        " PRIMARY KEY (stream, start_s, emoji, replica)) WITHOUT ROWID",
        "INSERT INTO windows_v2 (stream, start_s, emoji, replica, count)"
        " SELECT stream, start_s, emoji, replica, count FROM windows",
        "DROP TABLE windows",
        "ALTER TABLE windows_v2 RENAME TO windows",
        "CREATE INDEX windows_by_start ON windows (start_s)",
        "CREATE TABLE window_buckets (minute INTEGER NOT NULL, stream TEXT NOT NULL, replica TEXT NOT NULL,"
        " changed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (minute, stream, replica)) WITHOUT ROWID",
        "CREATE INDEX window_buckets_changed ON window_buckets (changed) WHERE changed > 0",
        "INSERT OR IGNORE INTO window_buckets (minute, stream, replica)"
        " SELECT DISTINCT start_s / 60, stream, replica FROM windows",
    ),
}

_UPSERT_WATERMARK = (
    "INSERT INTO watermarks (session_id, seq, updated_ms) VALUES (?, ?, ?)"
    " ON CONFLICT (session_id) DO UPDATE SET seq = max(seq, excluded.seq), updated_ms = excluded.updated_ms"
)
_UPSERT_COUNTER = (
    "INSERT INTO counters (collection, key, replica, count) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (collection, key, replica) DO UPDATE SET count = max(count, excluded.count)"
)
_UPSERT_WINDOW = (
    "INSERT INTO windows (stream, start_s, emoji, replica, count) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (stream, start_s, emoji, replica) DO UPDATE SET count = max(count, excluded.count)"
)
_ADD_BUCKET = "INSERT OR IGNORE INTO window_buckets (minute, stream, replica) VALUES (?, ?, ?)"
_MARK_BUCKET = (
    "INSERT INTO window_buckets (minute, stream, replica, changed) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (minute, stream, replica) DO UPDATE SET changed = excluded.changed"
)
_BUCKETS_REMEMBERED = 100_000
"""Buckets known to be in window_buckets, so a commit adds each bucket once, not once per tick."""


class Store:
    """One node's SQLite file. Create with ``await Store.open(path)``."""

    def __init__(self, conn: aiosqlite.Connection, path: str, generation: str, changed: int = 0) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._generation = generation
        self._lock = asyncio.Lock()
        self._changed = changed
        self._buckets: set[tuple[int, str, str]] = set()

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, synchronous: Synchronous = "FULL") -> Store:
        """Open (creating if missing) the store at ``path``.

        Raises SchemaVersionError for a file from a newer build and StoreError for a file that is
        not a reactmesh store.
        """
        path = os.fspath(path)
        conn = await connect_wal(path, synchronous)
        try:
            generation = await _init_schema(conn, path)
            row = await conn.execute_fetchall("SELECT coalesce(max(changed), 0) FROM window_buckets")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path, generation, int(next(iter(row))[0]))

    @property
    def path(self) -> str:
        return self._path

    def node_generation(self) -> str:
        """The random id created with this file (16 hex digits)."""
        return self._generation

    async def close(self) -> None:
        """Close the file; idempotent."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    # -- writing -----------------------------------------------------------------------------

    @property
    def changed_head(self) -> int:
        """The highest change mark given to a history bucket so far (see the module docstring)."""
        return self._changed

    async def commit(
        self,
        watermarks: Mapping[bytes, int],
        slots: Iterable[Slot],
        now_ms: int,
        *,
        sealed_before_s: int | None = None,
    ) -> None:
        """Upsert ``watermarks`` (session -> seq) and ``slots`` in one transaction.

        Each value is kept only if it is above what is stored. A window starting before
        ``sealed_before_s`` marks its bucket changed. On any error the transaction is rolled back and
        nothing is written; a cancelled caller's transaction still runs to its end.
        """
        wm_rows = [(session, seq, now_ms) for session, seq in watermarks.items()]
        counter_rows: list[tuple[str, str, str, int]] = []
        window_rows: list[tuple[str, int, str, str, int]] = []
        new_buckets: list[tuple[int, str, str]] = []
        marked: dict[tuple[int, str, str], None] = {}
        known = self._buckets
        for collection, key, replica, count in slots:
            if collection == WINDOWS:
                stream, emoji, start_s = key
                if not isinstance(stream, str) or not isinstance(emoji, str) or not isinstance(start_s, int):
                    raise TypeError(f"a windows key is (stream: str, emoji: str, start_s: int), got {key!r}")
                window_rows.append((stream, start_s, emoji, replica, count))
                bucket = (start_s // 60, stream, replica)
                if sealed_before_s is not None and start_s < sealed_before_s:
                    marked[bucket] = None
                elif bucket not in known:
                    known.add(bucket)
                    new_buckets.append(bucket)
            else:
                counter_rows.append((collection, encode_key(key), replica, count))
        if len(known) > _BUCKETS_REMEMBERED:
            known.clear()
        mark = self._changed + 1
        statements: list[Statement] = [
            (_UPSERT_WATERMARK, wm_rows),
            (_UPSERT_COUNTER, counter_rows),
            (_UPSERT_WINDOW, window_rows),
            (_ADD_BUCKET, new_buckets),
        ]
        if marked:
            statements.append((_MARK_BUCKET, [(*bucket, mark) for bucket in marked]))
        try:
            await write_transaction(self._live(), self._lock, statements)
        except BaseException:
            known.difference_update(new_buckets)
            raise
        if marked:
            self._changed = mark

    async def prune_windows(self, before_s: int) -> int:
        """Delete window rows with ``start_s < before_s`` (and the buckets of whole minutes before it); return how
        many rows."""
        return await write_transaction(
            self._live(),
            self._lock,
            [
                ("DELETE FROM windows WHERE start_s < ?", [(before_s,)]),
                ("DELETE FROM window_buckets WHERE minute < ?", [(before_s // 60,)]),
            ],
        )

    async def prune_watermarks(self, idle_before_ms: int, sessions: Iterable[bytes] | None = None) -> int:
        """Delete watermarks not updated since ``idle_before_ms``; return how many.

        With ``sessions``, only those are considered (primary-key lookups); without, the whole
        table is scanned (meant for start-up).
        """
        if sessions is None:
            async with self._lock:
                cur = await self._live().execute("DELETE FROM watermarks WHERE updated_ms < ?", (idle_before_ms,))
                return int(cur.rowcount)
        rows = [(s, idle_before_ms) for s in sessions]
        if not rows:
            return 0
        return await write_transaction(
            self._live(), self._lock, [("DELETE FROM watermarks WHERE session_id = ? AND updated_ms < ?", rows)]
        )

    # -- reading -----------------------------------------------------------------------------

    async def load_watermarks(self) -> list[tuple[bytes, int, int]]:
        """Every (session_id, seq, updated_ms), least recently updated first."""
        async with self._lock:
            rows = await self._live().execute_fetchall(
                "SELECT session_id, seq, updated_ms FROM watermarks ORDER BY updated_ms"
            )
        return [(bytes(s), int(q), int(u)) for s, q, u in rows]

    async def load_collections(
        self, windows_since_s: int | None = None, totals_since_s: int | None = None
    ) -> dict[str, KeyedGCounter]:
        """Every replica's slots as KeyedGCounters by collection name (totals and windows always
        present), ready for ``ReplicaState.merge``. ``windows_since_s`` skips older windows;
        ``totals_since_s`` keeps only the totals of streams with a window since then (the live ones)."""
        out = {TOTALS: KeyedGCounter(), WINDOWS: KeyedGCounter()}
        async with self._lock:
            conn = self._live()
            if totals_since_s is None:
                counter_rows = await conn.execute_fetchall("SELECT collection, key, replica, count FROM counters")
            else:
                counter_rows = list(
                    await conn.execute_fetchall(
                        "SELECT collection, key, replica, count FROM counters WHERE collection != ?", (TOTALS,)
                    )
                )
                streams = await conn.execute_fetchall(
                    "SELECT DISTINCT stream FROM windows WHERE start_s >= ?", (totals_since_s,)
                )
                for (stream,) in streams:
                    prefix = encode_key((str(stream), ""))  # "s<stream>\x1fs": every emoji of the stream
                    counter_rows.extend(
                        await conn.execute_fetchall(
                            "SELECT collection, key, replica, count FROM counters"
                            " WHERE collection = ? AND key >= ? AND key < ?",
                            (TOTALS, prefix, prefix[:-2] + chr(0x20)),
                        )
                    )
            window_rows = await conn.execute_fetchall(
                "SELECT stream, start_s, emoji, replica, count FROM windows WHERE start_s >= ?",
                (windows_since_s if windows_since_s is not None else -(2**63),),
            )
        for collection, key, replica, count in counter_rows:
            coll = out.get(collection)
            if coll is None:
                coll = out[collection] = KeyedGCounter()
            coll.increment(decode_key(key), replica, count)
        windows = out[WINDOWS]
        for stream, start_s, emoji, replica, count in window_rows:
            windows.increment((stream, emoji, start_s), replica, count)
        return out

    async def load_totals(self, keys: Iterable[tuple[str, str]]) -> KeyedGCounter:
        """The stored ``totals`` slots of ``keys`` (stream, emoji), every replica's, as a KeyedGCounter."""
        encoded = {encode_key(k): k for k in keys}
        out = KeyedGCounter()
        names = list(encoded)
        async with self._lock:
            conn = self._live()
            for i in range(0, len(names), 500):
                chunk = names[i : i + 500]
                rows = await conn.execute_fetchall(
                    "SELECT key, replica, count FROM counters WHERE collection = ?"
                    f" AND key IN ({', '.join('?' * len(chunk))})",
                    (TOTALS, *chunk),
                )
                for key, replica, count in rows:
                    out.increment(encoded[str(key)], str(replica), int(count))
        return out

    async def window_counts(self, stream: str, start_s: int, end_s: int) -> list[tuple[str, int, int]]:
        """(emoji, start_s, count summed over replicas) for windows of ``stream`` in [start_s, end_s),
        by emoji then time."""
        async with self._lock:
            rows = await self._live().execute_fetchall(
                "SELECT emoji, start_s, sum(count) FROM windows WHERE stream = ? AND start_s >= ? AND start_s < ?"
                " GROUP BY emoji, start_s ORDER BY emoji, start_s",
                (stream, start_s, end_s),
            )
        return [(str(e), int(s), int(c)) for e, s, c in rows]

    def _live(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError(f"{self._path}: store is closed")
        return self._conn


async def _init_schema(conn: aiosqlite.Connection, path: str) -> str:
    """Create the schema in a new file or check an existing one; return the node generation."""
    meta = await open_meta(
        conn,
        path,
        what="store",
        schema=_SCHEMA,
        version=SCHEMA_VERSION,
        new_meta={"generation": secrets.token_hex(8)},
        migrations=_MIGRATIONS,
    )
    generation = meta.get("generation", "")
    if not generation:
        raise StoreError(f"{path}: meta table has no generation")
    return generation
