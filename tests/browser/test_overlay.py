"""The overlay page in headless Chromium (Debian's, driven by Python Playwright; no browser download).

Two regions as real processes (``ProcessMesh``), each with its gateway. What they prove: taps in one page are
counted exactly once and seen in a page of the other region; a vote in one page moves the bars in the other; a
comment posted in one page is shown once in the other, and a shadowed (blocklisted) one only in its author's;
taps made while the gateway's process restarts are resent by the page and counted once, and both pages follow
the stream again. Screenshots go to ``$REACTMESH_ARTIFACTS`` (default ``tmp/artifacts`` in the repository).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reactmesh.region_node.devmesh import ProcessMesh, free_port_block

CHROMIUM = os.environ.get("REACTMESH_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install playwright)"
)
if shutil.which(CHROMIUM) is None:
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)

STREAM = "browser-1"
WITHIN_MS = 30_000


def artifacts() -> Path:
    path = Path(os.environ.get("REACTMESH_ARTIFACTS", REPO / "tmp" / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def count_is(page: Any, emoji: str, n: int) -> None:
    await page.wait_for_function(
        f"() => (window.reactmesh && (window.reactmesh.shown[{emoji!r}] || 0) === {n})", timeout=WITHIN_MS
    )
    assert await page.get_by_test_id(f"count-{emoji}").inner_text() == str(n)


async def test_taps_votes_and_a_gateway_restart_in_two_regions(browser: Any, tmp_path: Path) -> None:
    out = artifacts()
    blocklist = {"broadcaster": {"comments": {"blocklist": ["spoilers"]}}}
    async with ProcessMesh(
        regions=("a", "b"), base_port=free_port_block(20), data_dir=tmp_path / "mesh", overrides=blocklist
    ) as mesh:
        gw_a, gw_b = mesh.plans["a"].gateway, mesh.plans["b"].gateway
        page_a = await browser.new_page(viewport={"width": 1100, "height": 700})
        page_b = await browser.new_page(viewport={"width": 1100, "height": 700})
        await page_a.goto(f"http://{gw_a}/overlay?stream={STREAM}&viewer=alice")
        await page_b.goto(f"http://{gw_b}/overlay?stream={STREAM}&viewer=bob")
        for page in (page_a, page_b):
            await page.wait_for_function("() => window.reactmesh && window.reactmesh.frames > 0", timeout=WITHIN_MS)

        # Taps in region a: counted once, shown in both regions.
        heart = page_a.get_by_test_id("tap-heart")
        for _ in range(5):
            await heart.click()
        await page_a.get_by_test_id("tap-fire").click()
        await page_a.wait_for_function("() => window.reactmesh.sent.accepted_taps === 6", timeout=WITHIN_MS)
        await count_is(page_b, "heart", 5)
        await count_is(page_b, "fire", 1)
        await count_is(page_a, "heart", 5)

        # A poll made by a host; a vote in region b moves the bars in region a.
        async with httpx.AsyncClient() as http:
            made = await http.post(
                f"http://{gw_a}/v1/polls",
                json={"stream_id": STREAM, "question": "Best goal?", "options": ["Left foot", "Header"]},
            )
            assert made.status_code == 200, made.text
        await page_b.get_by_test_id("vote-1").click()
        await page_a.wait_for_function(
            "() => Object.values(window.reactmesh.polls).some(p => p.tallies[1] === 1)", timeout=WITHIN_MS
        )
        assert await page_a.get_by_test_id("tally-1").inner_text() == "1"
        # A comment typed in region a's page shows in region b's (gossip between the broadcasters), once.
        await page_a.get_by_test_id("comment-input").fill("What a finish!")
        await page_a.get_by_test_id("comment-send").click()
        await page_b.wait_for_function(
            "() => Object.values(window.reactmesh.comments).some(c => c.text === 'What a finish!')", timeout=WITHIN_MS
        )
        assert await page_b.get_by_test_id("comment").filter(has_text="What a finish!").count() == 1
        assert await page_a.evaluate("window.reactmesh.posted") == {
            "sent": 1,
            "stored": 1,
            "duplicates": 0,
            "retries": 0,
            "refused": 0,
        }
        # A blocklisted comment is shadowed: its author's page shows it, nobody else's does.
        await page_a.get_by_test_id("comment-input").fill("no spoilers here")
        await page_a.get_by_test_id("comment-send").click()
        await page_a.wait_for_function(
            "() => Object.values(window.reactmesh.comments).some(c => c.text === 'no spoilers here')", timeout=WITHIN_MS
        )
        await page_a.get_by_test_id("comment-input").fill("Great match")
        await page_a.get_by_test_id("comment-send").click()
        await page_b.wait_for_function(
            "() => Object.values(window.reactmesh.comments).some(c => c.text === 'Great match')", timeout=WITHIN_MS
        )
        assert await page_b.get_by_test_id("comment").filter(has_text="spoilers").count() == 0
        assert await page_a.get_by_test_id("comment").filter(has_text="spoilers").count() == 1
        await page_a.screenshot(path=str(out / "overlay-region-a.png"))
        await page_b.screenshot(path=str(out / "overlay-region-b.png"))

        # Region a's gateway restarts (its whole process, SIGTERM); taps made meanwhile are resent by the page.
        main = mesh.procs[("a", "main")]
        main.send_signal(signal.SIGTERM)
        await mesh.wait("a", "main")
        for _ in range(3):
            await heart.click()
        await page_a.wait_for_function("() => window.reactmesh.sent.unacked > 0", timeout=WITHIN_MS)
        await mesh.start("a", "main")
        await mesh.wait_ready()
        await page_a.wait_for_function(
            "() => window.reactmesh.sent.accepted_taps === 9 && window.reactmesh.sent.unacked === 0", timeout=WITHIN_MS
        )
        await count_is(page_b, "heart", 8)
        await count_is(page_a, "heart", 8)
        await page_a.wait_for_function("() => window.reactmesh.live", timeout=WITHIN_MS)
        async with httpx.AsyncClient() as http:
            totals = (await http.get(f"http://{gw_b}/v1/streams/{STREAM}/totals")).json()["totals"]
        assert totals == {"heart": 8, "fire": 1}
        await page_a.screenshot(path=str(out / "overlay-region-a-after-restart.png"))
        await asyncio.gather(page_a.close(), page_b.close())
