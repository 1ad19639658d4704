"""``reactmesh export``: the per-second windows of aggregator stores, merged, as one Parquet file for analytics.

    reactmesh export --db FILE [FILE ...] --out PATH.parquet [--stream S ...] [--since UNIX_S] [--until UNIX_S]

Pass every aggregator's file (copies and backups too: slots merge by max, so overlap is harmless) to get a
region's or the world's history; the files are only read, so a running aggregator's file is fine. ``--db`` and
``--stream`` take several values and may be repeated. The rows are (stream, emoji, window_start, count), sorted,
of windows starting in [--since, --until). ``--db`` defaults to $REACTMESH_EXPORT_DB (paths separated by
``os.pathsep``), ``--out`` to $REACTMESH_EXPORT_OUT. Prints one summary line. Exit status: 0 on success; 1 when a
file is missing, is not a reactmesh aggregator store, or the output cannot be written; 2 for a bad option or
without pyarrow. Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

# pyarrow and the store readers are imported by run_export, so building the ``reactmesh`` parser stays cheap.

_MAX_UNIX_S = 253_402_300_799  # 9999-12-31T23:59:59Z
INSTALL_HINT = "needs pyarrow, which is not installed: pip install 'reactmesh[export]' (or pip install pyarrow)"


class _Usage(Exception):
    """Raised by the option checks of ``run_export``; its message names the option."""


def add_export_command(subparsers: Any) -> None:
    """Add ``export`` to the ``reactmesh`` parser's subparsers."""
    export = subparsers.add_parser("export", help="write the merged per-second windows of stores to Parquet")
    export.add_argument(
        "--db",
        action="extend",
        nargs="+",
        default=None,
        metavar="FILE",
        help="aggregator SQLite stores, every aggregator's for the whole history (default: $REACTMESH_EXPORT_DB)",
    )
    export.add_argument(
        "--out",
        default=os.environ.get("REACTMESH_EXPORT_OUT"),
        metavar="PATH.parquet",
        help="the Parquet file to write, replaced when complete (default: $REACTMESH_EXPORT_OUT)",
    )
    export.add_argument(
        "--stream", action="extend", nargs="+", default=None, metavar="S", help="export only these streams"
    )
    export.add_argument("--since", metavar="UNIX_S", help="first window start to export, unix seconds (inclusive)")
    export.add_argument("--until", metavar="UNIX_S", help="export windows starting before this, unix seconds")


def run_export(args: argparse.Namespace) -> int:
    """Run ``reactmesh export``; return the exit status."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return _fail(INSTALL_HINT, 2)
    from reactmesh.region_node.history import merged_windows, write_parquet
    from reactmesh.region_node.sqlite import StoreError

    try:
        dbs = args.db or [p for p in os.environ.get("REACTMESH_EXPORT_DB", "").split(os.pathsep) if p]
        if not dbs:
            raise _Usage("--db FILE is required (or set REACTMESH_EXPORT_DB)")
        if not args.out:
            raise _Usage("--out PATH.parquet is required (or set REACTMESH_EXPORT_OUT)")
        since, until = _unix_seconds("--since", args.since), _unix_seconds("--until", args.until)
        if since is not None and until is not None and since >= until:
            raise _Usage(f"--since ({since}) must be before --until ({until})")
    except _Usage as exc:
        return _fail(str(exc), 2)
    try:
        windows = merged_windows(dbs, streams=args.stream or (), since_s=since, until_s=until)
        summary = write_parquet(windows, args.out)
    except StoreError as exc:
        return _fail(str(exc), 1)
    except OSError as exc:
        return _fail(f"cannot write {args.out}: {exc.strerror or exc}", 1)
    files = f"{len(dbs)} file{'s' if len(dbs) != 1 else ''}"
    if summary.first_start_s is None or summary.last_start_s is None:
        print(f"reactmesh export: 0 windows from {files} -> {args.out}")
    else:
        print(
            f"reactmesh export: {summary.rows} windows of {summary.streams} stream{'s' if summary.streams != 1 else ''}"
            f", starts {_iso(summary.first_start_s)} .. {_iso(summary.last_start_s)}, from {files} -> {args.out}"
        )
    return 0


def _unix_seconds(option: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise _Usage(f"{option}: expected unix seconds (an integer, e.g. 1767225600), got {text!r}") from None
    if not 0 <= value <= _MAX_UNIX_S:
        raise _Usage(f"{option}: expected unix seconds in 0..{_MAX_UNIX_S} (up to the year 9999), got {value}")
    return value


def _iso(unix_s: int) -> str:
    try:
        return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{unix_s} (unix s)"  # out of datetime's range: only a damaged store holds such a window


def _fail(message: str, status: int) -> int:
    print(f"reactmesh export: {message}", file=sys.stderr)
    return status
