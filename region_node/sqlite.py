"""SQLite as every reactmesh store opens it: one WAL connection per file, a versioned ``meta`` table, rollbacks
that never mask the original error.

- ``connect_wal`` gives an autocommit connection (transactions are explicit ``BEGIN IMMEDIATE`` ... ``COMMIT``) in
  WAL mode with the requested ``synchronous`` level and a busy timeout.
- ``open_meta`` creates a new file's schema and ``meta`` rows in one transaction, or checks an existing file's:
  a file written by a newer build is refused with ``SchemaVersionError``, a file of another kind (or not ours at
  all) with ``StoreError``, so nothing is ever misread.
- ``write_transaction`` runs a batch of statements in ONE transaction under the store's lock, to COMMIT or
  ROLLBACK, even when its caller is cancelled. The whole transaction (BEGIN, every statement, COMMIT or
  ROLLBACK) is ONE call on aiosqlite's thread: one hop through a busy event loop instead of one per statement,
  and never cut off between statements. Upserts go as multi-row statements (``multi_row``), one SQLite step
  and so one GIL handoff per few thousand rows instead of per row: on a busy process the per-row handoffs were
  what cut the aggregator's commits from 10/s to ~1/s (issue 16 item 2, measured by
  ``python -m reactmesh.bench.commit_saturation``). A cancelled caller just does not learn the outcome.
- ``check_meta`` is the check of an existing file's ``meta`` rows, shared by ``open_meta`` and by readers that open
  a store without writing (``region_node.history``).
- ``rollback_quietly`` ends an open transaction after a failure without raising over it.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import aiosqlite

Synchronous = Literal["FULL", "NORMAL"]
"""SQLite synchronous mode: FULL survives power loss, NORMAL only a process crash."""


class StoreError(Exception):
    """Raised when a file cannot be used as a reactmesh store (not ours, another kind, unreadable metadata),
    or when a store is used after ``close()``."""


class SchemaVersionError(StoreError):
    """Raised when opening a file whose schema version is newer than this build knows."""


async def fetchone(conn: aiosqlite.Connection, sql: str) -> sqlite3.Row | None:
    async with conn.execute(sql) as cur:
        row: sqlite3.Row | None = await cur.fetchone()
        return row


async def connect_wal(path: str, synchronous: Synchronous) -> aiosqlite.Connection:
    """An autocommit connection to ``path`` in WAL mode with the given ``synchronous`` level.

    Raises ValueError for another level and StoreError when the file refuses WAL.
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        mode = await fetchone(conn, "PRAGMA journal_mode=WAL")
        if mode is None or str(mode[0]).lower() != "wal":
            raise StoreError(f"{path}: could not switch to WAL journal mode (got {mode!r})")
        await conn.execute(f"PRAGMA synchronous={synchronous}")
        await conn.execute("PRAGMA busy_timeout=5000")
    except BaseException:
        await conn.close()
        raise
    return conn


async def rollback_quietly(conn: aiosqlite.Connection) -> None:
    """Roll back an open transaction, if any; a closed or broken connection is left alone."""
    # The connection is in autocommit mode, so in_transaction says whether BEGIN is still open.
    try:
        if conn.in_transaction:
            await conn.execute("ROLLBACK")
    except (sqlite3.Error, ValueError):
        pass  # a closed or broken connection has nothing left to roll back


Statement = tuple[str, Iterable[Sequence[Any]]]
"""An ``executemany``: SQL and its parameter rows."""


async def write_transaction(conn: aiosqlite.Connection, lock: asyncio.Lock, statements: Sequence[Statement]) -> int:
    """Run ``statements`` in one transaction under ``lock``; return the rows they changed.

    The transaction runs in a task of its own that the caller's cancellation does not reach, so it always ends in
    COMMIT or ROLLBACK before ``lock`` is released. Errors roll it back and propagate to the caller.
    """
    run = asyncio.ensure_future(_transaction(conn, lock, statements))
    run.add_done_callback(_retrieve)
    return await asyncio.shield(run)


async def _transaction(conn: aiosqlite.Connection, lock: asyncio.Lock, statements: Sequence[Statement]) -> int:
    async with lock:
        db = conn._conn  # the sqlite3 connection; raises ValueError once closed
        # aiosqlite has no public "run this function on your thread"; _execute is how its own methods do it.
        changed: int = await conn._execute(run_transaction, db, statements)
        return changed


def run_transaction(db: sqlite3.Connection, statements: Sequence[Statement]) -> int:
    """Run ``statements`` on ``db`` (autocommit mode) in one BEGIN IMMEDIATE ... COMMIT; return the rows changed.

    Blocking: meant for the connection's own thread. Any error (including one from COMMIT) rolls back and is
    raised; a ROLLBACK that fails as well never masks it.
    """
    db.execute("BEGIN IMMEDIATE")
    changed = 0
    try:
        for sql, rows in statements:
            for chunk_sql, params in multi_row(sql, rows):
                cur = db.execute(chunk_sql, params) if chunk_sql is not sql else db.executemany(sql, params)
                changed += max(cur.rowcount, 0)
        db.execute("COMMIT")
    except BaseException:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # a broken connection has nothing left to roll back; the original error is the one to see
        raise
    return changed


_VALUES = re.compile(r"VALUES \((\?(?:, \?)*)\)")
MULTI_ROW_PARAMS = 30_000
"""Parameters per multi-row statement: under SQLite's default limit of 32,766 host parameters."""


def multi_row(sql: str, rows: Iterable[Sequence[Any]]) -> Iterator[tuple[str, Any]]:
    """``sql``'s parameter rows as a few multi-row statements, each with its flat parameters.

    An ``INSERT ... VALUES (?, ..., ?) ...`` (upserts included) becomes ``VALUES (...), (...), ...`` with up to
    ``MULTI_ROW_PARAMS`` parameters per statement: the same rows written in the same order (a key written
    twice in one statement is upserted by its second row, as by consecutive single-row statements), but one
    SQLite step per statement instead of one per row. That matters because the sqlite3 module releases the GIL
    around every step, and on a busy process each re-acquisition can wait a whole switch interval (5 ms): per
    row, that starved the aggregator's commits (issue 16 item 2). Other statements come back as they are,
    ``sql`` itself with the rows, to run with ``executemany``.
    """
    match = _VALUES.search(sql)
    if match is None:
        yield sql, rows
        return
    rows = rows if isinstance(rows, list) else list(rows)
    width = match.group(1).count("?")
    per = max(1, MULTI_ROW_PARAMS // width)
    head, tail, one = sql[: match.start()], sql[match.end() :], f"({match.group(1)})"
    for i in range(0, len(rows), per):
        chunk = rows[i : i + per]
        yield f"{head}VALUES {', '.join([one] * len(chunk))}{tail}", [v for row in chunk for v in row]


def _retrieve(task: asyncio.Future[int]) -> None:
    # A cancelled caller no longer awaits the transaction; its error is still the caller's to see, not a warning.
    if not task.cancelled():
        task.exception()


async def open_meta(
    conn: aiosqlite.Connection,
    path: str,
    *,
    what: str,
    schema: Sequence[str],
    version: int,
    new_meta: Mapping[str, str],
    kind: str | None = None,
    migrations: Mapping[int, Sequence[str]] | None = None,
) -> dict[str, str]:
    """Create ``schema`` and the ``meta`` rows in a new file, or check an existing file; return its meta rows.

    ``what`` names the store in messages ("store", "poll store"). ``schema`` must create the table
    ``meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)``. A new file gets ``schema_version`` = ``version``,
    ``kind`` (when given) and ``new_meta``. An existing file must have a known schema version and, when ``kind`` is
    given, that kind. ``migrations`` maps an older version v to the statements that bring a file from v to v + 1:
    an older file is migrated step by step, in the same transaction as the check, so a crash leaves it at its old
    version, never halfway.
    """
    await conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {str(r[0]) for r in await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            if tables:
                raise StoreError(f"{path}: not a reactmesh {what} (has tables {sorted(tables)} but no meta table)")
            for statement in schema:
                await conn.execute(statement)
            meta = {"schema_version": str(version), **({"kind": kind} if kind is not None else {}), **new_meta}
            await conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(meta.items()))
        else:
            meta = {str(k): str(v) for k, v in await conn.execute_fetchall("SELECT key, value FROM meta")}
            found = meta.get("schema_version", "")
            steps = migrations or {}
            if found.isdigit() and int(found) < version and all(v in steps for v in range(int(found), version)):
                for v in range(int(found), version):
                    for statement in steps[v]:
                        await conn.execute(statement)
                await conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
                meta["schema_version"] = str(version)
            check_meta(meta, path, what=what, version=version, kind=kind)
        await conn.execute("COMMIT")
    except BaseException:
        await asyncio.shield(rollback_quietly(conn))
        raise
    return meta


def check_meta(
    meta: Mapping[str, str], path: str, *, what: str, version: int, kind: str | None = None, oldest: int | None = None
) -> None:
    """Check an existing file's ``meta`` rows: a known schema version and, when ``kind`` is given, that kind.

    Raises SchemaVersionError for a newer version and StoreError for another kind or a missing or older version.
    ``open_meta`` calls it on every existing file; readers that open a store without writing call it too, with
    ``oldest`` the oldest version they can read as it is.
    """
    if kind is not None and meta.get("kind") != kind:
        raise StoreError(f"{path}: not a reactmesh {what} (kind {meta.get('kind')!r}); use a file of its own")
    raw_version = meta.get("schema_version", "")
    if not raw_version.isdigit():
        raise StoreError(f"{path}: meta table has no valid schema_version (got {raw_version!r})")
    found = int(raw_version)
    if found > version:
        raise SchemaVersionError(
            f"{path}: {what} schema version {found} was written by a newer reactmesh; this build reads"
            f" version {version} at most. Upgrade this node or point it at another file."
        )
    if found < (version if oldest is None else oldest):
        raise StoreError(f"{path}: {what} schema version {found} is older than {version} and unknown")
