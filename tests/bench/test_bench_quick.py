"""The benchmark suite keeps working: scenarios run in quick mode and write their JSON figures.

Nothing here asserts how fast anything is; a benchmark's numbers belong in BENCHMARKS.md, not in a test.
The full ``all --quick`` run starts real process meshes and takes about two minutes, so it is marked slow;
the fast tests cover the two in-process scenarios, a shortened soak (through its REACTMESH_BENCH_SOAK knob),
the report arithmetic and the delay proxy.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reactmesh.bench.delay_proxy import DelayProxy, DelayProxyConfig
from reactmesh.bench.report import Options, Report
from reactmesh.bench.run import SCENARIOS, main

REPO = Path(__file__).resolve().parents[2]


def _load(out: Path, scenario: str) -> dict[str, object]:
    data = json.loads((out / f"{scenario}.json").read_text())
    assert isinstance(data, dict)
    return data


def _assert_reported(data: dict[str, object], scenario: str) -> None:
    assert data["scenario"] == scenario
    machine = data["machine"]
    assert isinstance(machine, dict) and machine["cores"] and machine["python"]
    figures = data["figures"]
    assert isinstance(figures, dict) and figures, f"{scenario} reported no figures"
    for name, summary in figures.items():
        assert set(summary) >= {"median", "min", "max", "n"}, name
        assert summary["min"] <= summary["median"] <= summary["max"] or summary["median"] != summary["median"], name
    runs = data["runs"]
    assert isinstance(runs, list) and runs


def test_report_gives_median_min_max_per_figure_and_judges_targets(tmp_path: Path) -> None:
    from reactmesh.bench.report import Target

    report = Report("x", "x", Options(quick=True, runs=3, out=tmp_path))
    for v in (3.0, 1.0, 2.0):
        report.add_run({"rate": v})
    report.targets = [Target("rate >= 2", "rate", ">=", 2.0), Target("rate <= 1", "rate", "<=", 1.0)]
    assert report.summary()["rate"] == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert [v["met"] for v in report.verdicts()] == [True, False]
    path = report.write()
    assert json.loads(path.read_text())["figures"]["rate"]["median"] == 2.0
    assert "| rate | 2.00 | 1.00 | 3.00 |" in report.table()


def test_core_and_memory_scenarios_run_quick_and_write_figures(tmp_path: Path) -> None:
    assert main(["core", "--quick", "--out", str(tmp_path)]) == 0
    assert main(["memory", "--quick", "--out", str(tmp_path)]) == 0
    core = _load(tmp_path, "core")
    _assert_reported(core, "core")
    assert "ours_entries_per_s" in core["figures"]  # type: ignore[operator]
    memory = _load(tmp_path, "memory")
    _assert_reported(memory, "memory")
    assert "bytes_per_session_tracemalloc" in memory["figures"]  # type: ignore[operator]


def test_soak_scenario_reports_both_processes_memory_over_time_and_gossip_per_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REACTMESH_BENCH_SOAK", json.dumps({"streams": 40, "seconds": 120, "sample_every_s": 20}))
    assert main(["soak", "--quick", "--out", str(tmp_path)]) == 0
    soak = _load(tmp_path, "soak")
    _assert_reported(soak, "soak")
    figures = soak["figures"]
    assert isinstance(figures, dict)
    for name in (
        "aggregator_rss_growth_last_half_pct",
        "broadcaster_rss_growth_last_half_pct",
        "aggregator_bytes_per_live_slot",
        "broadcaster_bytes_per_active_session",
        "aggregator_window_keys_end",
        "broadcaster_window_keys_end",
        "gossip_bytes_per_round_median",
        "gossip_bytes_per_round_max",
    ):
        assert name in figures, name
    extra = soak["extra"]
    assert isinstance(extra, dict) and extra["checks_failed_runs"] == 0  # every batch counted once, totals equal
    series = extra["series"][0]
    assert [s["t_s"] for s in series] == list(range(0, 121, 20))
    assert all(s["agg_rss"] > 0 and s["bcast_rss"] > 0 for s in series)
    assert series[-1]["sessions_seen"] > series[-1]["sessions_live"]  # sessions came and went
    targets = soak["targets"]
    assert isinstance(targets, list)
    assert {t["figure"] for t in targets} == {
        "aggregator_rss_growth_last_half_pct",
        "broadcaster_rss_growth_last_half_pct",
    }


def test_soak_params_from_the_environment_name_a_bad_field(monkeypatch: pytest.MonkeyPatch) -> None:
    from reactmesh.bench.scenarios.soak import SoakParams
    from reactmesh.merge.errors import ConfigError

    monkeypatch.setenv("REACTMESH_BENCH_SOAK", json.dumps({"streams": 2000}))
    assert SoakParams.chosen(quick=True).streams == 2000
    assert SoakParams.chosen(quick=True).seconds == 600
    monkeypatch.setenv("REACTMESH_BENCH_SOAK", json.dumps({"streams": 0}))
    with pytest.raises(ConfigError, match=r"'soak\.streams'"):
        SoakParams.chosen(quick=False)
    monkeypatch.setenv("REACTMESH_BENCH_SOAK", json.dumps({"stream": 10}))
    with pytest.raises(ConfigError, match=r"'soak\.stream'"):
        SoakParams.chosen(quick=False)


async def _echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def _ended(reader: asyncio.StreamReader) -> bool:
    """True once the connection is closed or reset (a reset may surface as either)."""
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


async def test_delay_proxy_delays_each_direction_and_cut_refuses_until_heal() -> None:
    server = await _echo_server()
    port = server.sockets[0].getsockname()[1]
    proxy = DelayProxy(DelayProxyConfig(f"127.0.0.1:{port}", delay_s=0.05))
    await proxy.start()
    host, _, port_text = proxy.address.rpartition(":")
    proxy_port = int(port_text)
    try:
        reader, writer = await asyncio.open_connection(host, proxy_port)
        started = time.monotonic()
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        assert time.monotonic() - started >= 0.1  # 50 ms there, 50 ms back: never sooner
        proxy.cut()
        assert await _ended(reader)  # the open connection was reset
        r2, _ = await asyncio.open_connection(host, proxy_port)
        assert await _ended(r2)  # new ones are reset while cut
        proxy.heal()
        r3, w3 = await asyncio.open_connection(host, proxy_port)
        w3.write(b"pong")
        assert await asyncio.wait_for(r3.readexactly(4), 5) == b"pong"
        w3.close()
    finally:
        await proxy.close()
        server.close()


@pytest.mark.slow
def test_every_scenario_runs_quick_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "reactmesh.bench", "all", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for scenario in SCENARIOS:
        _assert_reported(_load(out, scenario), scenario)
    index = json.loads((out / "index.json").read_text())
    assert index["failed"] == [] and set(index["scenarios"]) == set(SCENARIOS)


def test_commit_saturation_quick_mode_measures_both_transaction_paths(capsys: pytest.CaptureFixture[str]) -> None:
    from reactmesh.bench import commit_saturation

    assert commit_saturation.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "per-row.commits_per_s" in out and "one-call.commit_p99_ms" in out


def test_comments_scenario_runs_quick_and_reports_ingest_delivery_and_the_priority_lane(tmp_path: Path) -> None:
    assert main(["comments", "--quick", "--out", str(tmp_path)]) == 0
    data = _load(tmp_path, "comments")
    _assert_reported(data, "comments")
    figures = data["figures"]
    assert isinstance(figures, dict)
    for name in ("ingest_per_cpu_s", "burst_merged_per_s", "delivered_per_cpu_s", "delivery_lag_p99_ms"):
        assert name in figures, name
    assert figures["priority_lane_whole_ratio"]["min"] == 1.0  # sampling never drops a priority comment
