"""The README's commands, run as a user would: `reactmesh up --demo`, `serve` with a bad config, and every user
error answered with one line and a non-zero status (issue 12 item 6)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reactmesh.region_node.devmesh import free_port_block
from tests.support.serving import broadcaster_config, serving


def reactmesh(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reactmesh.region_node.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_up_with_demo_starts_three_regions_that_agree_and_stops_cleanly(tmp_path: Path) -> None:
    base = free_port_block(30)
    done = reactmesh("up", "--demo", "--duration", "8", "--base-port", str(base), "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for region, port in (("a", base), ("b", base + 10), ("c", base + 20)):
        assert f"region {region}: edge 127.0.0.1:{port}" in out
    assert "stopped." in out
    # The demo's closing line gives each region's exact merged total of the hot stream.
    line = next(x for x in out.splitlines() if x.startswith("demo totals of demo-0"))
    found = re.findall(r"([abc])=(\d+) \(shown (\d+)\)", line)
    exact = {region: int(total) for region, total, _ in found}
    shown = {region: int(total) for region, _, total in found}
    assert set(exact) == {"a", "b", "c"}
    assert exact["a"] > 0
    assert exact["a"] == exact["b"] == exact["c"], line
    # Every viewer's smoothed view drained to exactly the merged total: never more, nothing left pending.
    assert shown == exact, line
    for name in ("a-main", "a-agg1", "b-main", "c-agg1"):
        assert (tmp_path / f"{name}.toml").exists()


def test_serve_with_an_invalid_config_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        'region = "a"\n[aggregator]\nlisten = "127.0.0.1:0"\nnode_id = "a/agg-0"\n'
        f'db_path = "{tmp_path / "a.db"}"\ntick_ms = 0\n'
    )
    done = reactmesh("serve", "--target=aggregator", "--config", str(config), timeout=30)
    assert done.returncode == 2
    assert "aggregator.tick_ms" in done.stderr


def test_serve_without_the_section_its_target_needs_says_so(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('region = "a"\n')
    done = reactmesh("serve", "--target=edge", "--config", str(config), timeout=30)
    assert done.returncode == 2
    assert "[edge] section" in done.stderr


def test_version_and_help_name_the_environment_defaults() -> None:
    done = reactmesh("--version", timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("reactmesh "), done
    helps = reactmesh("load", "--help", timeout=30).stdout + reactmesh("up", "--help", timeout=30).stdout
    for text in ("$REACTMESH_EDGE", "$REACTMESH_BASE_PORT", "(default: 200)", "simulated viewers"):
        assert text in helps


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--log-level", "bogus", "up"], 2, "argument --log-level: expected one of DEBUG, INFO"),
        (["load", "--viewers", "-5"], 2, "argument --viewers: expected a value 1..100000, got -5"),
        (["load", "--hot-share", "2"], 2, "argument --hot-share: expected a value 0..1, got 2"),
        (["up", "--duration", "soon"], 2, "argument --duration: expected a number, got 'soon'"),
        (["watch", "no spaces!", "--broadcaster", "127.0.0.1:1"], 2, "reactmesh watch: stream id must be"),
        (["load", "--edge", "{dead}", "--connect-timeout", "1"], 1, "reactmesh load: cannot reach edge {dead}"),
        (["watch", "s1", "--broadcaster", "{dead}", "--connect-timeout", "1"], 1, "cannot reach broadcaster {dead}"),
    ],
)
def test_a_user_error_is_one_line_and_a_non_zero_status(args: list[str], status: int, message: str) -> None:
    dead = f"127.0.0.1:{free_port_block(1)}"  # nothing listens there
    done = reactmesh(*(a.format(dead=dead) for a in args), timeout=30)
    assert done.returncode == status, done
    assert message.format(dead=dead) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("reactmesh")]
    assert len(ours) == 1, done.stderr  # argparse adds its usage line above its error


async def test_watch_refused_by_a_real_broadcaster_exits_1(tmp_path: Path) -> None:
    """A reachable server that is not a broadcaster (here: its Subscribe is unknown) refuses the stream."""
    config = broadcaster_config(tmp_path)
    config["edge"] = {"listen": f"127.0.0.1:{free_port_block(1)}", "aggregators": ["127.0.0.1:1"]}
    async with serving(tmp_path, config, "edge"):
        done = await asyncio.to_thread(
            reactmesh, "watch", "s1", "--broadcaster", config["edge"]["listen"], "--duration", "20", timeout=60
        )
    assert done.returncode == 1, done
    assert "reactmesh watch: broadcaster" in done.stderr and "refused" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
