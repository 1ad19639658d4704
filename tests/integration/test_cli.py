"""The README's commands, run as a user would: `reactmesh up --demo`, `serve` with a bad config."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from reactmesh.region_node.devmesh import free_port_block


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
