"""History export: the per-second windows of aggregator stores, merged across files, and their Parquet file.

Each aggregator's SQLite file (``region_node.aggregator.store``) holds its own replica's G-counter slots of the
``windows`` collection, keyed (stream, emoji, start_s); a region's history, or the world's, is the join of all of
them. A window's count is the G-counter value (Shapiro et al. 2011): per slot (stream, emoji, start_s, replica)
the maximum over every file that holds it, then the sum over replicas. A slot only grows, so a copy, a backup or
a store holding merged peer state never lowers it, and passing a file twice changes nothing.

Guarantees:

- Read only. Each file is ATTACHed with ``mode=ro``: no write lock, no schema change, no checkpoint, so an
  aggregator may keep committing to it meanwhile (a WAL reader does not block the writer). Each file is read in
  one snapshot, one file after the other. Beside a store no process has open, SQLite may leave the empty
  ``-wal`` and ``-shm`` files every WAL reader needs; the store file itself is never written.
- A file is read only if it is a reactmesh aggregator store of a schema version this build knows
  (``sqlite.check_meta`` and a ``windows`` table); anything else raises ``StoreError`` naming the file.
- Bounded memory, any number of files. The merge runs inside SQLite, in a scratch database of its own (an
  anonymous temporary file, paged to disk, deleted on close): each file's slots are folded into it by max, one
  file at a time, so SQLite's limit on attached databases never applies. Python holds one batch of windows.
- Windows come out sorted by (stream, emoji, window_start), the scratch table's key order, so the sum over
  replicas is one ordered scan and needs no sort.

``merged_windows`` is the seam: batches of ``Window`` rows for any sink. ``write_parquet`` is the sink of
``reactmesh export``; a deployment feeding an OLAP store loads its files, or writes another sink over the same
batches. The Parquet schema is fixed (``parquet_schema``): stream string, emoji string, window_start timestamp
(UTC), count int64, none null. window_start is a timestamp rather than int64 unix seconds so that DuckDB, Spark or
pandas read it as an instant with no conversion (``date_trunc``, ``time_bucket`` apply directly) and nobody has
to guess its unit; DuckDB reads it as TIMESTAMP WITH TIME ZONE. Its unit is milliseconds, always whole seconds:
Parquet has no seconds unit (pyarrow would store a timestamp[s] as milliseconds and read it back so), and the
schema declared here is the one a reader gets back. pyarrow is imported only by ``write_parquet`` and
``parquet_schema`` (the ``export`` extra).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from reactmesh.region_node.aggregator.store import OLDEST_READABLE_VERSION, SCHEMA_VERSION
from reactmesh.region_node.sqlite import StoreError, check_meta

BATCH_ROWS = 65_536
"""Windows per batch, and so per Parquet row group."""

Window = tuple[str, str, int, int]
"""(stream, emoji, window_start_s, count): one per-second window, summed over replicas."""

_INT64 = (-(2**63), 2**63 - 1)

_SCRATCH = (
    "CREATE TABLE slots (stream TEXT NOT NULL, emoji TEXT NOT NULL, start_s INTEGER NOT NULL, replica TEXT NOT NULL,"
    " count INTEGER NOT NULL, PRIMARY KEY (stream, emoji, start_s, replica)) WITHOUT ROWID"
)
_FOLD = (
    "INSERT INTO main.slots (stream, emoji, start_s, replica, count)"
    " SELECT stream, emoji, start_s, replica, count FROM src.windows WHERE start_s >= ? AND start_s < ?{streams}"
    " ON CONFLICT (stream, emoji, start_s, replica) DO UPDATE SET count = max(count, excluded.count)"
)
_SELECT = (
    "SELECT stream, emoji, start_s, sum(count) FROM main.slots"
    " GROUP BY stream, emoji, start_s ORDER BY stream, emoji, start_s"
)


@dataclass(frozen=True)
class ExportSummary:
    """What ``write_parquet`` wrote: windows, distinct streams, and the first and last window start (None if
    no window)."""

    rows: int
    streams: int
    first_start_s: int | None
    last_start_s: int | None


def merged_windows(
    paths: Sequence[str | os.PathLike[str]],
    *,
    streams: Iterable[str] = (),
    since_s: int | None = None,
    until_s: int | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[list[Window]]:
    """The windows of every store in ``paths``, merged (max per slot, sum over replicas), in batches of at most
    ``batch_rows``, sorted by (stream, emoji, window_start).

    Only windows of ``streams`` (all when empty) starting in [``since_s``, ``until_s``) are read. The files are
    read and merged before this returns, so a missing or foreign file raises StoreError here, before any sink
    starts; the batches are then read lazily from the scratch database, which closes with the iterator.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    lo = _INT64[0] if since_s is None else since_s
    hi = _INT64[1] if until_s is None else until_s
    wanted = sorted(set(streams))
    conn = sqlite3.connect("", isolation_level=None, uri=True)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute(_SCRATCH)
        for path in paths:
            _fold(conn, os.fspath(path), lo, hi, wanted)
    except BaseException:
        conn.close()
        raise
    return _batches(conn, batch_rows)


def write_parquet(batches: Iterable[Sequence[Window]], path: str | os.PathLike[str]) -> ExportSummary:
    """Write ``batches`` to the Parquet file ``path`` (``parquet_schema``, one row group per batch).

    The file appears only when complete: rows go to ``PATH.partial``, renamed over ``path`` at the end and
    removed on any error. With no window at all the file still holds the schema. The summary counts streams as
    runs of equal stream ids, which is the number of distinct streams for sorted input like ``merged_windows``'.
    Raises ImportError without pyarrow and OSError when the file cannot be written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    target = os.fspath(path)
    partial = f"{target}.partial"
    rows = streams = 0
    first: int | None = None
    last: int | None = None
    previous: str | None = None
    try:
        with pq.ParquetWriter(partial, schema, compression="zstd") as writer:
            for batch in batches:
                if not batch:
                    continue
                stream_col = [w[0] for w in batch]
                start_col = [w[2] for w in batch]
                for stream in stream_col:
                    if stream != previous:
                        streams, previous = streams + 1, stream
                lo, hi = min(start_col), max(start_col)
                first = lo if first is None else min(first, lo)
                last = hi if last is None else max(last, hi)
                rows += len(batch)
                columns = [stream_col, [w[1] for w in batch], [t * 1000 for t in start_col], [w[3] for w in batch]]
                arrays = [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)]
                writer.write_batch(pa.record_batch(arrays, schema=schema))
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    return ExportSummary(rows=rows, streams=streams, first_start_s=first, last_start_s=last)


def parquet_schema() -> Any:
    """The export's ``pyarrow.Schema``: stream, emoji, window_start (timestamp[ms, UTC]), count (int64), none null."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("stream", pa.string(), nullable=False),
            pa.field("emoji", pa.string(), nullable=False),
            pa.field("window_start", pa.timestamp("ms", tz="UTC"), nullable=False),
            pa.field("count", pa.int64(), nullable=False),
        ]
    )


def _fold(conn: sqlite3.Connection, path: str, lo: int, hi: int, streams: list[str]) -> None:
    """Merge the windows of the store at ``path`` into the scratch ``slots`` table by max per slot."""
    if not os.path.isfile(path):
        raise StoreError(f"{path}: {'not a regular file' if os.path.exists(path) else 'no such file'}")
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        conn.execute("ATTACH DATABASE ? AS src", (uri,))
    except sqlite3.OperationalError as exc:
        raise StoreError(f"{path}: cannot open read-only ({exc})") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a reactmesh store ({exc})") from exc
    try:
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM src.sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            raise StoreError(f"{path}: not a reactmesh store (no meta table)")
        meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM src.meta")}
        if "windows" not in tables:
            kind = f", kind {meta['kind']!r}" if "kind" in meta else ""
            raise StoreError(f"{path}: not a reactmesh aggregator store (no windows table{kind})")
        check_meta(meta, path, what="store", version=SCHEMA_VERSION, oldest=OLDEST_READABLE_VERSION)
        in_streams = f" AND stream IN ({', '.join('?' * len(streams))})" if streams else ""
        conn.execute(_FOLD.format(streams=in_streams), (lo, hi, *streams))
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("DETACH DATABASE src")
        if isinstance(exc, sqlite3.DatabaseError):
            raise StoreError(f"{path}: not a readable reactmesh store ({exc})") from exc
        raise
    conn.execute("DETACH DATABASE src")


def _batches(conn: sqlite3.Connection, batch_rows: int) -> Iterator[list[Window]]:
    try:
        cursor = conn.execute(_SELECT)
        while rows := cursor.fetchmany(batch_rows):
            yield [(str(s), str(e), int(t), int(c)) for s, e, t, c in rows]
    finally:
        conn.close()
