"""The admin page in a real browser: Playwright drives Debian's headless Chromium
(/usr/bin/chromium; no browser download). A phone stand-in calls in and is bridged to the
Jigasi stand-in; the page shows the call, its Hang up button ends it, the CDR appears, and a
screenshot is kept under test-output/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dialbridge.calls.standins import wait_for
from tests.ops.rig import ADMIN_TOKEN, MUC, live_dialbridge

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


async def test_admin_page_shows_a_live_call_and_hangs_it_up(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    OUTPUT.mkdir(exist_ok=True)
    async with live_dialbridge(tmp_path) as db, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{db.base_url}/admin")
            await page.fill("#token", "wrong-token-wrong-token")
            await page.click("#login-form button")
            await page.wait_for_selector("#login-error:has-text('wrong token')")

            await page.fill("#token", ADMIN_TOKEN)
            await page.click("#login-form button")
            jigasi_row = page.locator("#registrations tr[data-user='jigasi']")
            await jigasi_row.get_by_text("registered", exact=True).wait_for()

            phone_call = await db.dial_in(caller="+4930123456712")
            (call_id,) = list(db.engine.calls)
            row = page.locator(f"#calls tr[data-call-id='{call_id}']")
            await row.wait_for(timeout=5000)
            await row.get_by_text("bridged").wait_for(timeout=5000)
            text = await row.inner_text()
            assert f"weekly@{MUC}" in text and "dial-in" in text
            assert "caller: answered" in text and "jigasi: answered" in text

            # A static PIN from the page, found again by room.
            await page.fill("#pin-conference", f"Board@{MUC}")
            await page.fill("#pin-value", "5151515151")
            await page.click("#pin-set button")
            await page.locator("#pins td", has_text="board@").wait_for()
            await page.screenshot(path=str(OUTPUT / "admin-page-live-call.png"), full_page=True)

            await row.locator("button[data-action='hangup']").click()
            assert await phone_call.ended(5) == "remote bye"
            await row.wait_for(state="detached", timeout=5000)
            assert await wait_for(lambda: not db.engine.calls, 5)
            cdr_row = page.locator(f"#cdrs tr[data-call-id='{call_id}']")
            await cdr_row.get_by_text("hung up by admin").wait_for(timeout=5000)
            await page.locator("#status", has_text="0 live calls").wait_for(timeout=5000)
            await page.screenshot(path=str(OUTPUT / "admin-page-after-hangup.png"), full_page=True)
        finally:
            await browser.close()
    assert (OUTPUT / "admin-page-live-call.png").stat().st_size > 10_000
