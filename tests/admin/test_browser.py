"""The dashboard in a real headless Chromium, driven by Playwright.

Debian's ``chromium`` is used (never Playwright's own browser download); the
session fixture installs it with apt-get when it is missing and the suite runs
as root, and otherwise skips with the reason. Screenshots go to a temporary
folder, or to ``$DASHBOARD_SCREENSHOTS`` (the docs' are made with
``DASHBOARD_SCREENSHOTS=docs/_static``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"


def _skip(reason: str) -> None:
    print(f"\nbrowser test skipped: {reason}", file=sys.stderr)
    pytest.skip(reason)


def _install_chromium() -> str | None:
    """Install Debian's chromium; return why it could not be, or None."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "chromium is missing; install it with 'sudo apt-get install chromium'"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")

    def apt(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["apt-get", *args], env=env, capture_output=True, text=True, timeout=1200
        )

    if apt("install", "-y", "chromium").returncode == 0:
        return None
    apt("update")  # stale package lists are the usual reason
    done = apt("install", "-y", "chromium")
    return None if done.returncode == 0 else f"apt-get install chromium: {done.stderr}"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Return the path of Debian's chromium, installing it when possible."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _skip("playwright is not installed (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        problem = _install_chromium()
        if problem is not None or not os.path.exists(CHROMIUM):
            _skip(problem or f"{CHROMIUM} missing after apt-get install")
    return CHROMIUM


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_staff_sees_hit_ratios_and_invalidates_a_group_in_chromium(
    chromium, live_server, dash_cache, screenshots
):
    from django.contrib.admin.models import LogEntry
    from playwright.sync_api import sync_playwright

    from tests.admin.conftest import make_user

    make_user("actor")  # staff with view_dashboard + act_on_cache
    # Traffic: 20 keys read 4 times each (L1 hits), 5 keys never set.
    dash_cache.set_many({f"user:{i}": {"id": i} for i in range(20)})
    dash_cache.set_many({f"page:{i}": "<p>hi</p>" * 20 for i in range(5)})
    for _ in range(4):
        for i in range(20):
            assert dash_cache.get(f"user:{i}") == {"id": i}
    for i in range(5):
        assert dash_cache.get(f"absent:{i}") is None

    dashboard = live_server.url + "/admin/tiered_cache_admin/cachedashboard/"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{live_server.url}/admin/login/?next={dashboard}")
            page.fill("#id_username", "actor")
            page.fill("#id_password", "pw")
            page.click("input[type=submit]")
            page.wait_for_selector("#tc-total-hit-ratio")

            total = page.inner_text("#tc-total-hit-ratio")
            assert re.fullmatch(r"\d+\.\d %", total), total
            assert float(total.split()[0]) > 0
            l1 = page.inner_text('tr[data-tier="l1"] .tc-hit-ratio')
            assert float(l1.split()[0]) > 0, l1
            page.screenshot(path=screenshots / "dashboard-overview.png", full_page=True)
            page.emulate_media(color_scheme="dark")
            page.reload()
            page.screenshot(
                path=screenshots / "dashboard-overview-dark.png", full_page=True
            )
            page.emulate_media(color_scheme="light")

            page.click("text=Key inspector")
            page.fill("#id_key", "user:3")
            page.click("input[value=Inspect]")
            page.wait_for_selector('tr[data-tier="l1"]')
            page.screenshot(
                path=screenshots / "dashboard-inspector.png", full_page=True
            )

            page.click("text=Key groups")
            page.fill("#id_group", "user")
            page.click("input[value='Invalidate…']")
            page.wait_for_selector("#tc-confirm")
            page.screenshot(path=screenshots / "dashboard-confirm.png", full_page=True)
            page.click("#tc-confirm")
            message = page.inner_text("ul.messagelist")
            assert "invalidated 20 keys of group 'user'" in message, message
        finally:
            browser.close()

    assert dash_cache.get_many([f"user:{i}" for i in range(20)]) == {}
    assert dash_cache.get("page:1") == "<p>hi</p>" * 20
    assert LogEntry.objects.get().user.username == "actor"
    for name in ("overview", "overview-dark", "inspector", "confirm"):
        assert (screenshots / f"dashboard-{name}.png").stat().st_size > 10_000
