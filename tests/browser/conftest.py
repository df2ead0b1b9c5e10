"""Browser tests: the real app over real HTTP, in Debian's headless Chromium, driven by Playwright.

Chromium is Debian's ``/usr/bin/chromium`` (``scripts/test.sh`` installs it when missing; set
``ANJU_TEST_CHROMIUM`` to use another build). Playwright's own browser download is never used: the
``playwright`` package only drives that binary. Without Chromium the browser tests fail under CI
(``CI`` set) and are skipped elsewhere.

Browser tests run on SQLite only: ``settings`` is overridden below, so ``demo`` and ``server`` from
tests/conftest.py give a live app seeded with the demo company, on one database.

- ``browser``: one Chromium for the whole test session.
- ``new_page(mobile=False, **context_options)``: a page in a fresh browser context (its own cookies
  and storage). ``mobile=True`` is a phone in WeChat's in-app browser: 390x844, touch, WeChat's user
  agent. ``context_options`` go to ``Browser.new_context`` (``base_url=server.url``, ``locale``...).
- ``page`` and ``mobile_page``: one such page each, for tests that need only one.

When a test fails, every page it opened is saved as a PNG and the report lists the files, with the
page's URL and any JavaScript errors and console errors it logged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core.db import get_database
from core.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page

CHROMIUM = os.environ.get("ANJU_TEST_CHROMIUM", "/usr/bin/chromium")
# As this machine's own check starts it: without the background-networking flags Chromium keeps
# trying to reach Google's hosts, and the closed network refuses each try.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ACTION_TIMEOUT_MS = 10_000  # Playwright's default is 30 s: a broken page should fail sooner

# An iPhone 13/14-sized screen in WeChat's in-app browser (the resident chat page is mobile-first).
WECHAT_USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.50(0x1800323a) NetType/WIFI Language/zh_CN"
)
MOBILE: dict[str, Any] = dict(
    viewport={"width": 390, "height": 844},
    device_scale_factor=3,
    is_mobile=True,
    has_touch=True,
    user_agent=WECHAT_USER_AGENT,
)
DESKTOP: dict[str, Any] = dict(viewport={"width": 1280, "height": 800})


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; the browser tests cannot run", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, started once for the session."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"{CHROMIUM} is missing (scripts/test.sh installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[dev]')")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def settings(sqlite_settings: Settings) -> Iterator[Settings]:
    """SQLite only (overrides the SQLite/PostgreSQL pair of tests/conftest.py for this folder)."""
    yield sqlite_settings
    get_database(sqlite_settings).dispose()


@dataclass
class _OpenPages:
    folder: Path
    pages: list[Page] = field(default_factory=list)
    problems: dict[int, list[str]] = field(default_factory=dict)  # id(page) -> errors it logged


_open_pages = pytest.StashKey[_OpenPages]()


@pytest.fixture
def new_page(
    browser: Browser, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Page]]:
    """Opens pages, each in a fresh context: ``new_page()``, ``new_page(mobile=True, locale="en")``."""
    contexts: list[BrowserContext] = []
    record = request.node.stash[_open_pages] = _OpenPages(folder=tmp_path / "screenshots")

    def open_page(mobile: bool = False, **context_options: Any) -> Page:
        options = {"locale": "zh-CN", **(MOBILE if mobile else DESKTOP), **context_options}
        context = browser.new_context(**options)
        contexts.append(context)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        page = context.new_page()
        problems = record.problems[id(page)] = []
        page.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))

        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                where = message.location.get("url") or ""
                problems.append(f"console.{message.type}: {message.text}" + (f" ({where})" if where else ""))

        page.on("console", on_console)
        record.pages.append(page)
        return page

    yield open_page
    for context in contexts:
        with contextlib.suppress(Exception):  # a crashed or closed page must not hide the test's result
            context.close()


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """A desktop-sized page in a fresh context."""
    return new_page()


@pytest.fixture
def mobile_page(new_page: Callable[..., Page]) -> Page:
    """A phone-sized page in WeChat's in-app browser (see ``MOBILE``)."""
    return new_page(mobile=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed test, save each page it opened as a PNG while the pages are still open."""
    report = yield
    record = item.stash.get(_open_pages, None)
    if record is None or not report.failed or report.when == "teardown":
        return report
    lines = []
    for n, page in enumerate(record.pages, start=1):
        if page.is_closed():
            continue
        path = record.folder / f"{report.when}-{n}.png"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=path, full_page=True, timeout=5_000)
            lines.append(f"page {n}: {page.url}\n  screenshot: {path}")
        except Exception as exc:
            lines.append(f"page {n}: {page.url}\n  no screenshot: {exc}")
        lines.extend(f"  {problem}" for problem in record.problems.get(id(page), []))
    if lines:
        report.sections.append(("browser pages", "\n".join(lines)))
    return report
