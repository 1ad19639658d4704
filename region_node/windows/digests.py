"""Reading stored history: per-second windows for GetHistory and the digests of history buckets for anti-entropy.

A *history bucket* is the stored windows of one stream in one minute (``minute = start_s // 60``), per replica.
Its digest is, per replica, the first 8 bytes of BLAKE2b over that replica's windows (start_s, emoji, count) in
(start_s, emoji) order (``bucket_hash``): two stores hold the same slots of a replica in a bucket iff the hashes
are equal (up to collisions). Digests are computed when asked, from the rows; a page is bounded (``MAX_PAGE``
buckets, ``MAX_ROWS`` rows), so what one request costs does not depend on how much history is stored.

``HistoryReader`` runs every query on a thread and a connection of its own: a WAL reader never blocks the node's
writer, and a history query never waits behind a commit (nor a commit behind a query). It reads any file with a
``windows`` and a ``window_buckets`` table of region_node.aggregator.store's schema.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

MAX_PAGE = 1024
"""Most buckets in one page of digests."""
MAX_ROWS = 10_000
"""Most rows in one page of a bucket."""

Bucket = tuple[int, str]
"""(minute, stream)."""

TOTALS_MINUTE = -1
"""The minute that names a stream's *totals bucket*: its ``totals`` slots, (emoji, count) per replica, digested and
fetched like a minute of windows (rows with start_s 0). Ended streams' totals leave memory everywhere, so a new or
long-away node learns them this way."""
_SEP = "\x1f"


@dataclass(frozen=True)
class ReplicaDigest:
    replica: str
    hash: int
    rows: int


@dataclass(frozen=True)
class BucketDigest:
    minute: int
    stream: str
    replicas: tuple[ReplicaDigest, ...]
    changed: int = 0


@dataclass(frozen=True)
class DigestPage:
    buckets: list[BucketDigest]
    more: bool
    head: int
    generation: str


def bucket_hash(rows: Iterable[tuple[int, str, int]]) -> int:
    """The digest of one replica's (start_s, emoji, count) rows of a bucket, given in (start_s, emoji) order."""
    h = hashlib.blake2b(digest_size=8)
    for start_s, emoji, count in rows:
        h.update(f"{start_s}\x1f{emoji}\x1f{count}\x1e".encode())
    return int.from_bytes(h.digest(), "little")


class HistoryReader:
    """Read-only queries of one store's windows, on a thread of their own. Close with ``close()``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-reader")
        self._conn: sqlite3.Connection | None = None
        self._generation = ""

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: Sequence[object]) -> T:
        if self._conn is None:
            conn = sqlite3.connect(self.path)
            conn.execute("PRAGMA query_only = 1")
            row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            self._generation = str(row[0]) if row else ""
            self._conn = conn
        with self._conn:  # each call reads one snapshot
            return fn(self._conn, *args)

    async def close(self) -> None:
        """Close the connection (on its thread) and the thread; idempotent."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._pool, conn.close)
        self._pool.shutdown(wait=False)

    # -- GetHistory ------------------------------------------------------------------------

    async def window_counts(
        self, stream: str, start_s: int, end_s: int, step_s: int, origin_s: int, emojis: Sequence[str] = ()
    ) -> list[tuple[str, int, int]]:
        """(emoji, bucket_start_s, count summed over replicas) of ``stream``'s windows in [start_s, end_s), in
        buckets of ``step_s`` aligned to ``origin_s``; only ``emojis`` when given."""
        return await self._run(_window_counts, stream, start_s, end_s, step_s, origin_s, tuple(emojis))

    async def window_slots(self, stream: str, start_s: int, end_s: int) -> list[tuple[int, str, str, int]]:
        """(start_s, emoji, replica, count) of ``stream``'s stored slots in [start_s, end_s)."""
        return await self._run(_window_slots, stream, start_s, end_s)

    # -- anti-entropy --------------------------------------------------------------------

    async def range_page(self, minute_lo: int, minute_hi: int, after: Bucket | None, limit: int) -> DigestPage:
        """Digests of the buckets of minutes [minute_lo, minute_hi), newest minute first, by stream within one;
        after ``after`` when given; at most ``limit``."""
        return await self._run(_range_page, minute_lo, minute_hi, after, min(limit, MAX_PAGE))

    async def changes_page(self, after: int, limit: int) -> DigestPage:
        """Digests of the buckets whose change mark is above ``after``, oldest change first; at most ``limit``."""
        return await self._run(_changes_page, after, min(limit, MAX_PAGE))

    async def digests(self, buckets: Sequence[Bucket]) -> dict[Bucket, dict[str, int]]:
        """replica -> hash of each of ``buckets`` here (a bucket absent here maps to {})."""
        return await self._run(_digests_of, tuple(buckets))

    async def totals_page(self, after: str | None, limit: int) -> DigestPage:
        """Digests of streams' totals buckets (minute ``TOTALS_MINUTE``), by stream, after ``after``."""
        return await self._run(_totals_page, after, min(limit, MAX_PAGE))

    async def stored_totals(self, stream: str) -> dict[str, dict[str, int]]:
        """emoji -> replica -> count of ``stream``'s stored totals slots."""
        return await self._run(_stored_totals, stream)

    async def rows(
        self, bucket: Bucket, replica: str, after: tuple[int, str] | None, limit: int
    ) -> tuple[list[tuple[int, str, int]], bool]:
        """One page of ``replica``'s (start_s, emoji, count) rows of ``bucket``, and whether more follow."""
        return await self._run(_rows, bucket, replica, after, max(1, min(limit, MAX_ROWS)))

    @property
    def generation(self) -> str:
        return self._generation


def _window_counts(
    conn: sqlite3.Connection, stream: str, lo: int, hi: int, step: int, origin: int, emojis: tuple[str, ...]
) -> list[tuple[str, int, int]]:
    only = f" AND emoji IN ({', '.join('?' * len(emojis))})" if emojis else ""
    rows = conn.execute(
        "SELECT emoji, ? + ((start_s - ?) / ?) * ?, sum(count) FROM windows"
        f" WHERE stream = ? AND start_s >= ? AND start_s < ?{only} GROUP BY 1, 2",
        (origin, origin, step, step, stream, lo, hi, *emojis),
    ).fetchall()
    return [(str(e), int(b), int(c)) for e, b, c in rows]


def _window_slots(conn: sqlite3.Connection, stream: str, lo: int, hi: int) -> list[tuple[int, str, str, int]]:
    rows = conn.execute(
        "SELECT start_s, emoji, replica, count FROM windows WHERE stream = ? AND start_s >= ? AND start_s < ?",
        (stream, lo, hi),
    ).fetchall()
    return [(int(s), str(e), str(r), int(c)) for s, e, r, c in rows]


def _bucket_digest(conn: sqlite3.Connection, minute: int, stream: str, changed: int = 0) -> BucketDigest:
    rows = conn.execute(
        "SELECT replica, start_s, emoji, count FROM windows WHERE stream = ? AND start_s >= ? AND start_s < ?"
        " ORDER BY replica, start_s, emoji",
        (stream, minute * 60, minute * 60 + 60),
    ).fetchall()
    replicas: list[ReplicaDigest] = []
    i = 0
    while i < len(rows):
        replica = rows[i][0]
        j = i
        while j < len(rows) and rows[j][0] == replica:
            j += 1
        replicas.append(ReplicaDigest(str(replica), bucket_hash((s, e, c) for _, s, e, c in rows[i:j]), j - i))
        i = j
    return BucketDigest(minute, stream, tuple(replicas), changed)


def _totals_rows(conn: sqlite3.Connection, stream: str) -> list[tuple[str, str, int]]:
    """(replica, emoji, count) of one stream's stored totals, by replica then emoji."""
    prefix = f"s{stream}{_SEP}s"
    rows = conn.execute(
        "SELECT key, replica, count FROM counters WHERE collection = 'totals' AND key >= ? AND key < ?",
        (prefix, prefix[:-2] + chr(ord(_SEP) + 1)),
    ).fetchall()
    out = [(str(r), str(k)[len(prefix) :], int(c)) for k, r, c in rows if _SEP not in str(k)[len(prefix) :]]
    out.sort()
    return out


def _totals_digest(conn: sqlite3.Connection, stream: str) -> BucketDigest:
    rows = _totals_rows(conn, stream)
    replicas: list[ReplicaDigest] = []
    for replica in sorted({r for r, _, _ in rows}):
        mine = [(0, e, c) for r, e, c in rows if r == replica]
        replicas.append(ReplicaDigest(replica, bucket_hash(mine), len(mine)))
    return BucketDigest(TOTALS_MINUTE, stream, tuple(replicas))


def _stored_totals(conn: sqlite3.Connection, stream: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for replica, emoji, count in _totals_rows(conn, stream):
        out.setdefault(emoji, {})[replica] = count
    return out


def _totals_page(conn: sqlite3.Connection, after: str | None, limit: int) -> DigestPage:
    out: list[BucketDigest] = []
    low = "s" if after is None else f"s{after}{chr(ord(_SEP) + 1)}"
    while len(out) < limit:
        row = conn.execute(
            "SELECT key FROM counters WHERE collection = 'totals' AND key >= ? ORDER BY key LIMIT 1", (low,)
        ).fetchone()
        if row is None or not str(row[0]).startswith("s"):
            return DigestPage(out, False, _head(conn), _generation(conn))
        stream = str(row[0])[1:].split(_SEP, 1)[0]
        out.append(_totals_digest(conn, stream))
        low = f"s{stream}{chr(ord(_SEP) + 1)}"
    return DigestPage(out, limit > 0, _head(conn), _generation(conn))


def _head(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(changed), 0) FROM window_buckets WHERE changed > 0").fetchone()
    return int(row[0])


def _generation(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    return str(row[0]) if row else ""


def _range_page(conn: sqlite3.Connection, lo: int, hi: int, after: Bucket | None, limit: int) -> DigestPage:
    out: list[BucketDigest] = []
    if after is not None:
        minute, stream_after, inclusive = after[0], after[1], False
    else:
        minute, stream_after, inclusive = hi - 1, "", True
    minute = min(minute, hi - 1)
    while len(out) < limit and minute >= lo:
        op = ">=" if inclusive else ">"
        streams = conn.execute(
            f"SELECT DISTINCT stream FROM window_buckets WHERE minute = ? AND stream {op} ? ORDER BY stream LIMIT ?",
            (minute, stream_after, limit - len(out)),
        ).fetchall()
        for (stream,) in streams:
            out.append(_bucket_digest(conn, minute, str(stream)))
        if len(out) >= limit:
            break
        row = conn.execute(
            "SELECT max(minute) FROM window_buckets WHERE minute < ? AND minute >= ?", (minute, lo)
        ).fetchone()
        if row[0] is None:
            return DigestPage(out, False, _head(conn), _generation(conn))
        minute, stream_after, inclusive = int(row[0]), "", True
    return DigestPage(out, len(out) >= limit and limit > 0, _head(conn), _generation(conn))


def _changes_page(conn: sqlite3.Connection, after: int, limit: int) -> DigestPage:
    rows = conn.execute(
        "SELECT minute, stream, changed FROM window_buckets WHERE changed > ? ORDER BY changed LIMIT ?",
        (after, limit),
    ).fetchall()
    seen: dict[Bucket, int] = {}
    for minute, stream, changed in rows:
        seen[(int(minute), str(stream))] = int(changed)
    out = [_bucket_digest(conn, m, s, c) for (m, s), c in seen.items()]
    return DigestPage(out, len(rows) >= limit and limit > 0, _head(conn), _generation(conn))


def _digests_of(conn: sqlite3.Connection, buckets: tuple[Bucket, ...]) -> dict[Bucket, dict[str, int]]:
    out: dict[Bucket, dict[str, int]] = {}
    for minute, stream in buckets:
        d = _totals_digest(conn, stream) if minute == TOTALS_MINUTE else _bucket_digest(conn, minute, stream)
        out[(minute, stream)] = {r.replica: r.hash for r in d.replicas}
    return out


def _rows(
    conn: sqlite3.Connection, bucket: Bucket, replica: str, after: tuple[int, str] | None, limit: int
) -> tuple[list[tuple[int, str, int]], bool]:
    minute, stream = bucket
    if minute == TOTALS_MINUTE:
        rows = [(0, e, c) for r, e, c in _totals_rows(conn, stream) if r == replica and (after is None or e > after[1])]
        return rows[:limit], len(rows) > limit
    lo_s, lo_e = after if after is not None else (minute * 60, "")
    op = ">" if after is not None else ">="
    rows = conn.execute(
        "SELECT start_s, emoji, count FROM windows WHERE stream = ? AND start_s >= ? AND start_s < ?"
        f" AND replica = ? AND (start_s, emoji) {op} (?, ?) ORDER BY start_s, emoji LIMIT ?",
        (stream, minute * 60, minute * 60 + 60, replica, lo_s, lo_e, limit + 1),
    ).fetchall()
    more = len(rows) > limit
    return [(int(s), str(e), int(c)) for s, e, c in rows[:limit]], more
