"""``reactmesh export`` over real aggregator stores written through ``Store``, checked against a model.

The stores overlap the way real ones do: two aggregators count the same windows (their slots add up), a backup
holds older values of one aggregator's slots and windows its retention has since dropped, and a third file holds
merged copies of both replicas' slots plus another region's. Each ``StoreFile`` keeps a plain model of what its
file holds (per slot the maximum ever committed, minus what was pruned); the expected export is computed from the
models alone, so it does not share the SQL it checks.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from reactmesh.region_node.aggregator.store import Store
from reactmesh.region_node.cli import main
from reactmesh.region_node.history import Window, merged_windows, parquet_schema, write_parquet
from reactmesh.region_node.polls.store import PollStore
from reactmesh.region_node.state import WINDOWS

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
R0, R1, R2 = "a/agg-0~0a0a0a0a0a0a0a0a", "a/agg-1~1b1b1b1b1b1b1b1b", "b/agg-0~2c2c2c2c2c2c2c2c"
EMOJIS = ("clap", "fire", "like")

SlotKey = tuple[str, str, int, str]
"""(stream, emoji, start_s, replica)"""


class StoreFile:
    """A real aggregator store on disk and a model of it: per slot, the maximum ever committed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.model: dict[SlotKey, int] = {}

    async def commit(self, slots: dict[SlotKey, int]) -> None:
        store = await Store.open(self.path)
        try:
            rows = [(WINDOWS, (s, e, t), r, c) for (s, e, t, r), c in slots.items()]
            await store.commit({}, rows, now_ms=0)
        finally:
            await store.close()
        for key, count in slots.items():
            self.model[key] = max(self.model.get(key, 0), count)

    async def prune(self, before_s: int) -> None:
        store = await Store.open(self.path)
        try:
            await store.prune_windows(before_s)
        finally:
            await store.close()
        self.model = {k: c for k, c in self.model.items() if k[2] >= before_s}

    def copy(self, path: Path) -> StoreFile:
        """A backup: the file as it is now (closed, so the WAL is checkpointed into it)."""
        shutil.copyfile(self.path, path)
        other = StoreFile(path)
        other.model = dict(self.model)
        return other


def expected(files: Iterable[StoreFile]) -> list[Window]:
    """Max per slot over the files, then the sum over replicas, sorted by (stream, emoji, start)."""
    slot_max: dict[SlotKey, int] = {}
    for f in files:
        for key, count in f.model.items():
            slot_max[key] = max(slot_max.get(key, 0), count)
    windows: dict[tuple[str, str, int], int] = defaultdict(int)
    for (stream, emoji, start, _), count in slot_max.items():
        windows[(stream, emoji, start)] += count
    return sorted((s, e, t, c) for (s, e, t), c in windows.items())


async def build(tmp_path: Path) -> list[StoreFile]:
    rng = random.Random(7)
    agg0 = StoreFile(tmp_path / "a-agg-0.db")
    first = {(s, e, T0 + t, R0): rng.randint(1, 20) for s in ("demo-0", "demo-1") for e in EMOJIS for t in range(150)}
    await agg0.commit({k: c for k, c in first.items() if rng.random() < 0.6})
    await agg0.commit({k: c + rng.randint(0, 5) for k, c in agg0.model.items() if rng.random() < 0.5})
    backup = agg0.copy(tmp_path / "a-agg-0.backup.db")
    # After the backup: some slots grow, newer seconds arrive, retention drops the oldest 20 s.
    await agg0.commit({k: c + rng.randint(1, 9) for k, c in agg0.model.items() if rng.random() < 0.3})
    await agg0.commit({("demo-0", e, T0 + t, R0): rng.randint(1, 30) for e in EMOJIS for t in range(150, 210)})
    await agg0.prune(T0 + 20)

    agg1 = StoreFile(tmp_path / "a-agg-1.db")
    await agg1.commit(
        {(s, e, T0 + t, R1): rng.randint(1, 40) for s in ("demo-0", "demo-2") for e in EMOJIS for t in range(0, 210, 3)}
    )

    # A file holding merged state: stale or current copies of R0's and R1's slots, and a replica of its own.
    merged = StoreFile(tmp_path / "b-merged.db")
    copies = {k: c - rng.randint(0, c) for k, c in [*backup.model.items(), *agg1.model.items()] if rng.random() < 0.4}
    await merged.commit({**copies, **{("demo-0", "like", T0 + t, R2): t + 1 for t in range(0, 210, 7)}})
    files = [agg0, backup, agg1, merged]

    # The data exercises every case the merge must get right.
    assert any(k not in agg0.model for k in backup.model)  # pruned from the live file, kept by the backup
    assert any(agg0.model.get(k, 0) > c for k, c in backup.model.items())  # the backup is stale
    assert any(0 < c < max(backup.model.get(k, 0), agg1.model.get(k, 0)) for k, c in merged.model.items())
    assert any((s, e, t, R1) in agg1.model for (s, e, t, r) in agg0.model)  # two replicas on one window
    return files


@pytest.fixture(autouse=True)
def _no_export_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REACTMESH_EXPORT_DB", raising=False)
    monkeypatch.delenv("REACTMESH_EXPORT_OUT", raising=False)


@pytest.fixture
def stores(tmp_path: Path) -> list[StoreFile]:
    return asyncio.run(build(tmp_path))


def paths(files: Iterable[StoreFile]) -> list[str]:
    return [str(f.path) for f in files]


def exported(path: Path) -> list[Window]:
    table = pq.read_table(path)
    assert table.schema.equals(parquet_schema())
    rows = table.to_pylist()
    assert all(r["window_start"].microsecond == 0 for r in rows)  # whole seconds
    return [(r["stream"], r["emoji"], int(r["window_start"].timestamp()), r["count"]) for r in rows]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def readme_query() -> str:
    """The SQL block of the README's "History export" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n### History export\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sql\n(.*?)```", section, re.S)
    assert match, "README's History export section has no sql block"
    return match.group(1)


def one_error_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.rstrip("\n")


# -- what the export holds ---------------------------------------------------------------------------------------


def test_export_counts_every_window_once_over_overlapping_copies_and_replicas(
    stores: list[StoreFile], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "history.parquet"
    before = {f.path: digest(f.path) for f in stores}
    assert main(["export", "--db", *paths(stores), "--out", str(out)]) == 0
    truth = expected(stores)
    assert exported(out) == truth
    assert {f.path: digest(f.path) for f in stores} == before  # read only
    assert not list(tmp_path.glob("*.partial"))
    streams = len({w[0] for w in truth})
    assert capsys.readouterr().out == (
        f"reactmesh export: {len(truth)} windows of {streams} streams,"
        f" starts 2026-01-01T00:00:00Z .. 2026-01-01T00:03:29Z, from 4 files -> {out}\n"
    )


def test_passing_files_twice_changes_nothing(stores: list[StoreFile], tmp_path: Path) -> None:
    out = tmp_path / "twice.parquet"
    assert main(["export", "--db", *paths(stores), "--db", *paths(reversed(stores)), "--out", str(out)]) == 0
    assert exported(out) == expected(stores)


def test_readme_duckdb_query_gives_per_minute_totals_of_the_stream(
    stores: list[StoreFile], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--db", *paths(stores), "--out", "history.parquet"]) == 0
    per_minute: dict[tuple[int, str], int] = defaultdict(int)
    for stream, emoji, start, count in expected(stores):
        if stream == "demo-0":
            per_minute[(start - start % 60, emoji)] += count
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")  # a session in another zone: the query still gives UTC minutes
    rows = con.execute(readme_query()).fetchall()
    assert [(int(minute.timestamp()), emoji, int(taps)) for minute, emoji, taps in rows] == [
        (minute, emoji, taps) for (minute, emoji), taps in sorted(per_minute.items())
    ]
    assert all(minute.utcoffset().total_seconds() == 0 for minute, _, _ in rows)


def test_python_m_cli_export_runs_as_a_process(stores: list[StoreFile], tmp_path: Path) -> None:
    out = tmp_path / "demo-0.parquet"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTMESH_")}
    command = [sys.executable, "-m", "reactmesh.region_node.cli", "export", "--db", *paths(stores)]
    proc = subprocess.run(
        [*command, "--out", str(out), "--stream", "demo-0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith("reactmesh export: ") and proc.stdout.count("\n") == 1
    assert exported(out) == [w for w in expected(stores) if w[0] == "demo-0"]


def test_stream_and_time_filters_keep_windows_of_those_streams_starting_in_since_until(
    stores: list[StoreFile], tmp_path: Path
) -> None:
    out = tmp_path / "some.parquet"
    since, until = T0 + 30, T0 + 90
    argv = ["export", "--db", *paths(stores), "--out", str(out), "--stream", "demo-0", "--stream", "demo-2"]
    assert main([*argv, "--since", str(since), "--until", str(until)]) == 0
    rows = exported(out)
    assert rows == [w for w in expected(stores) if w[0] in ("demo-0", "demo-2") and since <= w[2] < until]
    assert {w[0] for w in rows} == {"demo-0", "demo-2"}
    assert min(w[2] for w in rows) == since and max(w[2] for w in rows) == until - 1
    assert main(["export", "--db", *paths(stores), "--out", str(out), "--since", str(T0 + 200)]) == 0
    assert exported(out) == [w for w in expected(stores) if w[2] >= T0 + 200]
    assert main(["export", "--db", *paths(stores), "--out", str(out), "--until", str(T0 + 5)]) == 0
    assert exported(out) == [w for w in expected(stores) if w[2] < T0 + 5]


def test_no_matching_window_still_writes_a_file_with_the_schema(
    stores: list[StoreFile], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none.parquet"
    assert main(["export", "--db", *paths(stores), "--out", str(out), "--stream", "nobody"]) == 0
    assert exported(out) == []
    assert capsys.readouterr().out == f"reactmesh export: 0 windows from 4 files -> {out}\n"


def test_windows_stream_out_in_bounded_batches_one_row_group_each(stores: list[StoreFile], tmp_path: Path) -> None:
    truth = expected(stores)
    batches = list(merged_windows(paths(stores), batch_rows=50))
    assert all(1 <= len(b) <= 50 for b in batches)
    assert [w for b in batches for w in b] == truth
    out = tmp_path / "small-groups.parquet"
    summary = write_parquet(merged_windows(paths(stores), batch_rows=50), out)
    assert (summary.rows, summary.first_start_s, summary.last_start_s) == (len(truth), T0, T0 + 209)
    assert summary.streams == 3
    assert pq.ParquetFile(out).metadata.num_row_groups == math.ceil(len(truth) / 50)
    assert exported(out) == truth


def test_more_files_than_sqlite_attaches_at_once_all_count(tmp_path: Path) -> None:
    files = [StoreFile(tmp_path / f"agg-{i}.db") for i in range(13)]

    async def fill() -> None:
        for i, f in enumerate(files):
            await f.commit({("s", "like", T0, f"r{i}"): i + 1, ("s", "like", T0, "shared"): 100 + i})

    asyncio.run(fill())
    out = tmp_path / "many.parquet"
    assert main(["export", "--db", *paths(files), "--out", str(out)]) == 0
    assert exported(out) == [("s", "like", T0, sum(range(1, 14)) + 112)] == expected(files)


async def test_a_store_is_read_while_its_writer_holds_it_and_a_transaction_is_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "live.db"
    store = await Store.open(path)
    try:
        await store.commit({}, [(WINDOWS, ("s", "like", T0), R0, 5)], now_ms=0)
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO windows (stream, emoji, start_s, replica, count) VALUES ('s', 'like', ?, ?, 7)", (T0 + 1, R0)
        )
        out = tmp_path / "live.parquet"
        assert main(["export", "--db", str(path), "--out", str(out)]) == 0
        assert exported(out) == [("s", "like", T0, 5)]  # the committed state, not the open transaction
        writer.execute("COMMIT")  # the export took no lock the writer waits for
        writer.close()
        await store.commit({}, [(WINDOWS, ("s", "like", T0), R0, 9)], now_ms=0)
        assert main(["export", "--db", str(path), "--out", str(out)]) == 0
        assert exported(out) == [("s", "like", T0, 9), ("s", "like", T0 + 1, 7)]
    finally:
        await store.close()
    capsys.readouterr()


def test_db_and_out_default_to_the_environment(
    stores: list[StoreFile], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "from-env.parquet"
    monkeypatch.setenv("REACTMESH_EXPORT_DB", os.pathsep.join(paths(stores)))
    monkeypatch.setenv("REACTMESH_EXPORT_OUT", str(out))
    assert main(["export"]) == 0
    assert exported(out) == expected(stores)


# -- errors: one line on stderr, a non-zero exit, the output left alone ------------------------------------------


def test_a_missing_file_is_one_line_exit_1_and_the_old_output_stays(
    stores: list[StoreFile], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "history.parquet"
    out.write_bytes(b"yesterday's export")
    missing = tmp_path / "a-agg-9.db"
    assert main(["export", "--db", *paths(stores), str(missing), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert one_error_line(captured.err) == f"reactmesh export: {missing}: no such file"
    assert captured.out == ""
    assert out.read_bytes() == b"yesterday's export"
    assert not missing.exists()
    assert not list(tmp_path.glob("*.partial"))


def _text_file(path: Path) -> None:
    path.write_text("stream,emoji,count\n")


def _other_sqlite(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE windows (x)")


def _poll_store(path: Path) -> None:
    async def make() -> None:
        await (await PollStore.open(path)).close()

    asyncio.run(make())


def _newer_store(path: Path) -> None:
    async def make() -> None:
        await (await Store.open(path)).close()

    asyncio.run(make())
    with closing(sqlite3.connect(path, isolation_level=None)) as db:  # closing checkpoints the WAL into the file
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_text_file, "not a reactmesh store (file is not a database)"),
        (_other_sqlite, "not a reactmesh store (no meta table)"),
        (_poll_store, "not a reactmesh aggregator store (no windows table, kind 'polls')"),
        (_newer_store, "store schema version 99 was written by a newer reactmesh"),
    ],
    ids=["text", "other-sqlite", "poll-store", "newer-schema"],
)
def test_a_file_that_is_not_an_aggregator_store_is_refused_by_name(
    make: Callable[[Path], None],
    message: str,
    stores: list[StoreFile],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.db"
    make(bad)
    before = digest(bad)
    out = tmp_path / "history.parquet"
    assert main(["export", "--db", *paths(stores), str(bad), "--out", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"reactmesh export: {bad}: {message}"), line
    assert not out.exists()
    assert digest(bad) == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--since", "yesterday"], "--since: expected unix seconds (an integer, e.g. 1767225600), got 'yesterday'"),
        (["--until", "-5"], "--until: expected unix seconds in 0..253402300799 (up to the year 9999), got -5"),
        (["--since", str(T0), "--until", str(T0)], f"--since ({T0}) must be before --until ({T0})"),
    ],
    ids=["since-not-a-number", "until-negative", "empty-range"],
)
def test_a_bad_time_option_is_one_line_exit_2(
    options: list[str], message: str, stores: list[StoreFile], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "history.parquet"
    assert main(["export", "--db", *paths(stores), "--out", str(out), *options]) == 2
    assert one_error_line(capsys.readouterr().err) == f"reactmesh export: {message}"
    assert not out.exists()


def test_without_db_or_out_it_says_which_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--out", str(tmp_path / "x.parquet")]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        "reactmesh export: --db FILE is required (or set REACTMESH_EXPORT_DB)"
    )
    assert main(["export", "--db", str(tmp_path / "x.db")]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        "reactmesh export: --out PATH.parquet is required (or set REACTMESH_EXPORT_OUT)"
    )


def test_an_unwritable_output_is_one_line_exit_1(
    stores: list[StoreFile], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "no-such-dir" / "history.parquet"
    assert main(["export", "--db", *paths(stores), "--out", str(out)]) == 1
    assert one_error_line(capsys.readouterr().err).startswith(f"reactmesh export: cannot write {out}: ")


def test_without_pyarrow_export_says_how_to_install_it(
    stores: list[StoreFile], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    out = tmp_path / "history.parquet"
    assert main(["export", "--db", *paths(stores), "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == "reactmesh export: needs pyarrow, which is not installed: pip install 'reactmesh[export]'" + (
        " (or pip install pyarrow)"
    )
    assert not out.exists()
