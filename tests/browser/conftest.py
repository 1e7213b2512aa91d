"""Fixtures of the browser tests: the site built once per session, served, and a Chromium.

Without Chromium (or the playwright package) these tests are skipped, saying what is missing
and how to install it; with ``COOKBOOK_REQUIRE_BROWSER=1`` (as CI sets) that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser import site
from tests.browser.site import Server, Watch

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ViewportSize


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = site.missing()
    if reason is None:
        return
    if os.environ.get(site.REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{site.REQUIRE_ENV} is set and the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="session")
def served(browser_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Server]]:
    """The site, built once for the session into a temporary folder and served on 127.0.0.1."""
    built = site.build_site(tmp_path_factory.mktemp("site") / "html")
    with Server(built) as server:
        yield built, server


@pytest.fixture(scope="session")
def built(served: tuple[Path, Server]) -> Path:
    return served[0]


@pytest.fixture(scope="session")
def server(served: tuple[Path, Server]) -> Server:
    return served[1]


@pytest.fixture(scope="session")
def browser(browser_available: None) -> Iterator[Browser]:
    with site.chromium() as (_, browser):
        yield browser


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    """A fresh browser profile for each test: no cache, no stored theme or tab choice."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    context.set_default_timeout(10_000)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url.rstrip("/"))
    yield context
    context.close()


@pytest.fixture
def watch(context: BrowserContext, server: Server) -> Callable[..., Watch]:
    """Opens a new tab in the test's profile, watched for errors and off-site requests."""

    def open_tab(viewport: ViewportSize | None = None) -> Watch:
        page = context.new_page()
        if viewport:
            page.set_viewport_size(viewport)
        return Watch(page, server)

    return open_tab
