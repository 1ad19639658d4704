"""SQLite as every reactmesh store opens it: one WAL connection per file, a versioned ``meta`` table, rollbacks
that never mask the original error.

- ``connect_wal`` gives an autocommit connection (transactions are explicit ``BEGIN IMMEDIATE`` ... ``COMMIT``) in
  WAL mode with the requested ``synchronous`` level and a busy timeout.
- ``open_meta`` creates a new file's schema and ``meta`` rows in one transaction, or checks an existing file's:
  a file written by a newer build is refused with ``SchemaVersionError``, a file of another kind (or not ours at
  all) with ``StoreError``, so nothing is ever misread.
- ``write_transaction`` runs a batch of statements in ONE transaction under the store's lock, to COMMIT or
  ROLLBACK, even when its caller is cancelled: aiosqlite runs statements on its own thread, so a transaction cut
  off between two awaits would leave the connection inside BEGIN (the next BEGIN fails) or roll back a COMMIT
  that the thread was already executing. A cancelled caller just does not learn the outcome.
- ``check_meta`` is the check of an existing file's ``meta`` rows, shared by ``open_meta`` and by readers that open
  a store without writing (``region_node.history``).
- ``rollback_quietly`` ends an open transaction after a failure without raising over it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
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
        await conn.execute("BEGIN IMMEDIATE")
        changed = 0
        try:
            for sql, rows in statements:
                cur = await conn.executemany(sql, rows)
                changed += max(cur.rowcount, 0)
            await conn.execute("COMMIT")
        except BaseException:
            await rollback_quietly(conn)
            raise
        return changed


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
