"""A broadcaster's polls on disk: one SQLite file (WAL) holding its whole ``merge.polls.PollSet``.

Guarantees:

- ``save(delta)`` writes one delta of ``PollSet.delta_since`` in ONE transaction: after a crash
  either all of it is on disk or none of it is. Such a delta carries the *current* state of every
  unit it names (a poll's head, or one voter's retained writes), so each unit's rows are replaced,
  and the file always mirrors the set as of the last saved version.
- ``load()`` returns exactly the set that the saved deltas add up to (decoded through the CRDT
  codec, so a corrupt row is refused with StoreError rather than misread).
- Durability: WAL with ``synchronous=FULL`` by default (every commit is fsynced), because a vote
  is acknowledged only after it is saved. A schema version lives in ``meta``; a file written by a
  newer build, or one that is not a poll store (an aggregator's store, say), is refused.

Tables: ``polls(poll_id, spec, closed_*)`` one row per poll head (spec as an encoded
``reactmesh.v1.PollSpec``, close stamp as columns), and ``votes(poll_id, voter, stamp, option)``
one row per retained write, so a save costs O(units changed), never O(voters of the poll).
"""

from __future__ import annotations

import asyncio
import os

import aiosqlite
from google.protobuf.message import DecodeError as ProtobufDecodeError

from reactmesh.merge.codec import seal
from reactmesh.merge.errors import DecodeError
from reactmesh.merge.lww import LwwMap
from reactmesh.merge.polls import PollSet
from reactmesh.region_node.sqlite import StoreError, Synchronous, connect_wal, open_meta, write_transaction
from reactmesh.v1 import crdt_pb2

SCHEMA_VERSION = 1
KIND = "polls"

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE polls (poll_id TEXT PRIMARY KEY, spec BLOB, closed_wall_ms INTEGER, closed_logical INTEGER,"
    " closed_replica TEXT) WITHOUT ROWID",
    "CREATE TABLE votes (poll_id TEXT NOT NULL, voter TEXT NOT NULL, wall_ms INTEGER NOT NULL,"
    " logical INTEGER NOT NULL, replica TEXT NOT NULL, option INTEGER NOT NULL,"
    " PRIMARY KEY (poll_id, voter, wall_ms, logical, replica, option)) WITHOUT ROWID",
)

_UPSERT_HEAD = (
    "INSERT INTO polls (poll_id, spec, closed_wall_ms, closed_logical, closed_replica) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (poll_id) DO UPDATE SET spec = excluded.spec, closed_wall_ms = excluded.closed_wall_ms,"
    " closed_logical = excluded.closed_logical, closed_replica = excluded.closed_replica"
)
_DELETE_VOTER = "DELETE FROM votes WHERE poll_id = ? AND voter = ?"
_INSERT_VOTE = (
    "INSERT OR IGNORE INTO votes (poll_id, voter, wall_ms, logical, replica, option) VALUES (?, ?, ?, ?, ?, ?)"
)

HeadRow = tuple[str, bytes | None, int | None, int | None, str | None]
VoteRow = tuple[str, str, int, int, str, int]


class PollStore:
    """One broadcaster's poll file. Create with ``await PollStore.open(path)``."""

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, synchronous: Synchronous = "FULL") -> PollStore:
        """Open (creating if missing) the poll store at ``path``.

        Raises SchemaVersionError for a file from a newer build and StoreError for a file that is
        not a poll store.
        """
        path = os.fspath(path)
        conn = await connect_wal(path, synchronous)
        try:
            await _init_schema(conn, path)
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

    async def save(self, delta: PollSet) -> int:
        """Write a delta of ``PollSet.delta_since`` in one transaction; return the units written.

        On any error the transaction is rolled back and nothing is written; a cancelled caller's transaction still
        runs to its end (``sqlite.write_transaction``).
        """
        heads, voters, rows = _rows(delta)
        if not heads and not voters:
            return 0
        await write_transaction(
            self._live(), self._lock, [(_UPSERT_HEAD, heads), (_DELETE_VOTER, voters), (_INSERT_VOTE, rows)]
        )
        return len(heads) + len(voters)

    async def load(self, history: int = LwwMap.DEFAULT_HISTORY) -> PollSet:
        """The saved set, keeping ``history`` writes per voter; StoreError for a corrupt row."""
        async with self._lock:
            conn = self._live()
            heads = await conn.execute_fetchall(
                "SELECT poll_id, spec, closed_wall_ms, closed_logical, closed_replica FROM polls"
            )
            votes = await conn.execute_fetchall(
                "SELECT poll_id, voter, wall_ms, logical, replica, option FROM votes ORDER BY poll_id"
            )
        states: dict[str, crdt_pb2.LwwMapState] = {}
        for poll_id, voter, wall_ms, logical, replica, option in votes:
            state = states.get(poll_id)
            if state is None:
                state = states[poll_id] = crdt_pb2.LwwMapState()
            entry = state.entries.add(key=voter, value=option)
            entry.stamp.wall_ms, entry.stamp.logical, entry.stamp.replica = wall_ms, logical, replica
        body = crdt_pb2.PollSetState()
        try:
            for poll_id, spec, wall_ms, logical, replica in heads:
                msg = body.polls.add(poll_id=poll_id)
                if spec is not None:
                    msg.spec.ParseFromString(spec)
                if wall_ms is not None:
                    state = states.setdefault(poll_id, crdt_pb2.LwwMapState())
                    state.closed_at.wall_ms, state.closed_at.logical, state.closed_at.replica = (
                        wall_ms,
                        logical,
                        replica,
                    )
            for poll_id, state in states.items():
                body.polls.add(poll_id=poll_id, votes=seal(LwwMap.TYPE, 1, state))
            return PollSet.decode(seal(PollSet.TYPE, 1, body), history=history)
        except (DecodeError, ProtobufDecodeError, TypeError, ValueError) as exc:
            raise StoreError(f"{self._path}: corrupt poll rows: {exc}") from exc

    def _live(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError(f"{self._path}: poll store is closed")
        return self._conn


def _rows(delta: PollSet) -> tuple[list[HeadRow], list[tuple[str, str]], list[VoteRow]]:
    heads: list[HeadRow] = []
    voters: list[tuple[str, str]] = []
    rows: list[VoteRow] = []
    for poll_id in delta:
        spec = delta.spec(poll_id)
        closed = delta.closed_at(poll_id)
        if spec is not None or closed is not None:
            heads.append(
                (
                    poll_id,
                    spec.to_proto().SerializeToString() if spec is not None else None,
                    closed.wall_ms if closed is not None else None,
                    closed.logical if closed is not None else None,
                    closed.replica if closed is not None else None,
                )
            )
        votes = delta.votes(poll_id)
        if votes is None:
            continue
        for voter in votes.keys():  # noqa: SIM118 - keys() includes voters that count nothing
            voters.append((poll_id, voter))
            rows.extend(
                (poll_id, voter, stamp.wall_ms, stamp.logical, stamp.replica, option)
                for stamp, option in votes.history(voter)
            )
    return heads, voters, rows


async def _init_schema(conn: aiosqlite.Connection, path: str) -> None:
    """Create the schema in a new file or check an existing one."""
    await open_meta(conn, path, what="poll store", schema=_SCHEMA, version=SCHEMA_VERSION, new_meta={}, kind=KIND)
