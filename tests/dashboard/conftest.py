"""Fixtures of the dashboard's browser tests: a stack, a user, headless Chromium.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``) driven by
Playwright for Python. Outside CI a missing browser skips these tests; in CI
(``CI=true``) it fails them. axe-core, for the accessibility scan, comes from npm
with the interop test's packages (``tests/interop/ts``, pinned by its lockfile;
``./scripts/test`` runs ``npm ci`` there): missing, it skips or fails the same way.
Every page a test opens is watched: a console error, a page error, or a request
to any host but 127.0.0.1 fails the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests import support

PROJECT = Path(__file__).parent.parent / "dashboard_project"
SCREENSHOTS = Path(__file__).parent / "screenshots"
USER, PASSWORD = "ada", "correct horse battery"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
#: axe-core's browser build, from ``npm ci`` in tests/interop/ts
AXE = Path(__file__).parent.parent / "interop" / "ts" / "node_modules" / "axe-core" / "axe.min.js"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("TRIGGERFISH_CHROMIUM"), shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}: browser tests may not skip in CI")
    pytest.skip(what)


def require_axe() -> Path:
    """axe-core's script, or a skip (outside CI) / a failure (in CI) when npm ci has not run."""
    if not AXE.is_file():
        _missing(f"{AXE} is missing (npm ci --prefix tests/interop/ts)")
    return AXE


def require_browser() -> str:
    """Chromium's path, or a skip (outside CI) / a failure (in CI) without it."""
    path = chromium_path()
    missing = None
    if path is None:
        missing = "Chromium is not installed (apt-get install chromium)"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[test]')"
    if missing:
        _missing(missing)
    assert path is not None
    return path


@dataclass
class Dashboard:
    url: str
    key: str
    #: the signed-in browser's cookies, shared by each test's context
    signed_in: dict[str, Any] | None = None

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self.key}"}
        response = httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)
        return response


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    require_browser()
    folder = tmp_path_factory.mktemp("dashboard")
    with support.database("sqlite", folder) as url, contextlib.ExitStack() as running:
        key = support.create_key(url)
        server = support.start_server(url, folder)
        running.enter_context(support.processes_stopped(server))
        worker = support.start_worker(
            server,
            key,
            folder,
            project=PROJECT,
            concurrency=3,
            wait=False,
            # a wait of a second suspends the run: the trace shows a durable wait
            extra_env={"TRIGGERFISH_SUSPEND_THRESHOLD": "0.25"},
        )
        running.enter_context(support.processes_stopped(worker))
        # the user is made with the CLI while the worker starts
        made = subprocess.run(
            [sys.executable, "-m", "triggerfish.cli.main", "users", "create", USER],
            input=f"{PASSWORD}\n{PASSWORD}\n",
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        worker.wait_ready()
        yield Dashboard(server.url, key)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright's sync API (in a thread with
    no running event loop); closed after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=require_browser(),
            args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser(dashboard: Dashboard) -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@dataclass
class Watch:
    """What went wrong in the browser while a test ran."""

    problems: list[str] = field(default_factory=list)


def watch(context: Any, page: Any, found: Watch) -> None:
    def on_console(message: Any) -> None:
        if message.type == "error":
            found.problems.append(f"console error: {message.text}")

    def on_route(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if host != "127.0.0.1":
            found.problems.append(f"request to {route.request.url}")
            route.abort()
        else:
            route.continue_()

    page.on("console", on_console)
    page.on("pageerror", lambda error: found.problems.append(f"page error: {error}"))
    context.route("**/*", on_route)


def sign_in(page: Any, user: str = USER, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")


@pytest.fixture
def page(browser: Any, dashboard: Dashboard) -> Iterator[Any]:
    """A signed-in page at 1280 px; the test fails on any console or page error."""
    context = browser.new_context(
        base_url=dashboard.url, viewport=DESKTOP, storage_state=dashboard.signed_in
    )
    context.set_default_timeout(15_000)
    tab = context.new_page()
    found = Watch()
    watch(context, tab, found)
    tab.on("dialog", lambda dialog: dialog.accept())
    if dashboard.signed_in is None:  # once per module: the session cookie is reused
        sign_in(tab)
        tab.wait_for_url(dashboard.url + "/")
        dashboard.signed_in = dict(context.storage_state())
    yield tab
    context.close()
    assert not found.problems, found.problems


def screenshot(page: Any, name: str) -> None:
    """The page at desktop and at phone width, into tests/dashboard/screenshots/ (not committed)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    size = page.viewport_size
    page.screenshot(path=str(SCREENSHOTS / f"{name}-desktop.png"), full_page=True)
    # small ones, the kind the README shows (docs/images/)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-desktop.jpg"), type="jpeg", quality=70)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.jpg"), type="jpeg", quality=70)
    page.set_viewport_size(size)
