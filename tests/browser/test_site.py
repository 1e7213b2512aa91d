"""The site as readers use it, in a real (headless) Chromium, against the built site on 127.0.0.1.

Every test here is data-driven over the pages that exist: each recipe page under
docs/{transactions,querying,relationships}, and each HTML page the build wrote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cookbook_site import page as page_model
from cookbook_site.page import Example
from cookbook_site.run import STATIC
from tests.browser.site import DOCS, ROOT, Server, Watch, html_name, recipe_sources

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

RECIPES = recipe_sources()
BACKENDS = ("sqlite", "postgresql", "mariadb")
MOBILE: ViewportSize = {"width": 375, "height": 740}
BUDGET = 250 * 1024  # bytes a recipe page may load, all kinds together, before anything on demand
#: The browser's runner, which runs on CPython too: here it pastes blocks as a reader would.
PASTE_RUNNER = STATIC / "runner" / "cookbook_runner.py"

Open = Callable[..., Watch]

# What makes a page scroll (or be cut off) sideways: furo clips the root (`html {overflow-x:
# hidden}`) and lets its content column scroll, so both are checked, and so is every element
# of the article, but for code blocks and tables, which scroll inside themselves.
SIDEWAYS = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [];
  for (const box of [document.documentElement, ...document.querySelectorAll('.content')])
    if (box.scrollWidth > box.clientWidth + 1)
      wide.push(`${box.tagName.toLowerCase()}.${box.className}: ${box.scrollWidth} px of content in ${box.clientWidth} px`);
  for (const e of document.querySelectorAll('article *')) {
    if (e.closest('pre, .highlight, .table-wrapper, .visually-hidden')) continue;
    const right = e.getBoundingClientRect().right;
    if (right > width + 1)
      wide.push(`${e.tagName.toLowerCase()}.${[...e.classList].join('.')} reaches ${Math.round(right)} px: ${e.textContent.slice(0, 60)}`);
  }
  return wide.slice(0, 8);
}"""


def page_id(path: Path) -> str:
    return path.relative_to(DOCS).as_posix()


def site_pages() -> list[str]:
    """Every HTML page a build of docs/ writes (the 404 page and the index and search pages too)."""
    pages = ["index.html", "search.html", "genindex.html", "404.html"]
    for path in page_model.pages(DOCS):
        name = path.relative_to(DOCS).with_suffix(".html").as_posix()
        if name not in pages:
            pages.append(name)
    return pages


def built_examples(built: Path, source: Path) -> list[Example]:
    """A page's examples, read from the copy of its source the build kept (as the site shows it)."""
    copy = built / "_sources" / f"{source.relative_to(DOCS).as_posix()}.txt"
    return list(page_model.read(source, text=copy.read_text(encoding="utf-8")).examples)


def title_of(page: Page) -> str:
    """The page's title as a reader reads it (without the heading's link mark)."""
    text: str = page.locator("article h1").first.evaluate(
        "h => [...h.childNodes].filter(n => !(n.classList && n.classList.contains('headerlink')))"
        ".map(n => n.textContent).join('').trim()"
    )
    return text


def assert_clean(watch: Watch) -> None:
    assert [] == watch.problems


# --- On every page ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in site_pages() if n not in {html_name(p) for p in RECIPES}])
def test_page_loads_clean_and_local(name: str, watch: Open) -> None:
    """No console error, no failed request, and nothing fetched from any host but the site's own."""
    tab = watch()
    response = tab.goto(name)
    assert response is not None and response.status == 200
    assert_clean(tab)


@pytest.mark.parametrize("source", RECIPES, ids=page_id)
def test_recipe_page_loads_clean_light_and_fits_a_phone(source: Path, watch: Open) -> None:
    """As every page, clean and local; under 250 KB with all it loads (HTML, CSS, JS, fonts,
    images, uncompressed, cold cache); and at 375 px wide nothing but code scrolls sideways."""
    tab = watch()
    response = tab.goto(html_name(source))
    assert response is not None and response.status == 200
    assert_clean(tab)
    weight = tab.weight()
    assert sum(weight.values()) < BUDGET, f"{page_id(source)} loads {sum(weight.values())} bytes: {weight}"

    tab.page.set_viewport_size(MOBILE)
    assert [] == tab.page.evaluate(SIDEWAYS), "at 375 px wide, the page scrolls sideways"
    assert_clean(tab)


def test_the_sidebar_leads_to_every_recipe_and_next_previous_work(watch: Open, server: Server) -> None:
    tab = watch()
    tab.goto("index.html")
    links = tab.page.locator(".sidebar-tree a.reference").evaluate_all("links => links.map(a => a.href)")
    expected = {server.url + html_name(p) for p in RECIPES}
    assert set() == expected - set(links), "recipe pages missing from the navigation"

    first = html_name(RECIPES[0])
    tab.page.locator(f'.sidebar-tree a.reference[href$="{first}"]').first.click()
    tab.page.wait_for_url(server.url + first)
    title = title_of(tab.page)
    assert title

    next_link = tab.page.locator("a.next-page")
    if next_link.count():
        next_link.click()
        tab.page.wait_for_load_state("load")
        assert tab.page.url != server.url + first
        tab.page.locator("a.prev-page").click()
        tab.page.wait_for_url(server.url + first)
        assert title == title_of(tab.page)
    assert_clean(tab)


def test_navigation_drawer_on_a_phone(watch: Open, server: Server) -> None:
    """At 375 px the sidebar is a drawer: the menu button opens it and its links work."""
    tab = watch(MOBILE)
    tab.goto("index.html")
    target = html_name(RECIPES[-1])
    link = tab.page.locator(f'.sidebar-drawer a.reference[href$="{target}"]').first
    on_screen = (
        "e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.left >= 0 && r.right <= innerWidth; }"
    )
    assert not link.evaluate(on_screen), "the navigation is on screen before the menu button is pressed"
    tab.page.locator('.mobile-header label[for="__navigation"]').click()
    link.element_handle().wait_for_element_state("stable")
    assert link.evaluate(on_screen), "the menu button did not bring the navigation on screen"
    link.click()
    tab.page.wait_for_url(server.url + target)
    assert_clean(tab)


def _background(page: Page) -> tuple[int, int, int]:
    color: str = page.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(v) for v in re.findall(r"\d+", color)[:3])
    return red, green, blue


def test_light_dark_switch(watch: Open) -> None:
    """furo's theme button turns the page dark and light again, and the choice is kept."""
    tab = watch()
    page_name = html_name(RECIPES[0])
    tab.goto(page_name)
    page = tab.page
    assert "auto" == page.evaluate("document.body.dataset.theme")
    assert sum(_background(page)) > 600  # the reader's system prefers light

    toggle = page.locator("button.theme-toggle:visible").first
    toggle.click()
    assert "dark" == page.evaluate("document.body.dataset.theme")
    assert sum(_background(page)) < 150

    tab.goto(html_name(RECIPES[-1]))
    assert "dark" == page.evaluate("document.body.dataset.theme"), "the next page forgot the dark theme"
    assert sum(_background(page)) < 150

    page.locator("button.theme-toggle:visible").first.click()
    assert "light" == page.evaluate("document.body.dataset.theme")
    assert sum(_background(page)) > 600
    assert_clean(tab)


def test_404_page(watch: Open, server: Server) -> None:
    """A missing page gets the site's own 404 page, styled, with links that work, even in a subfolder."""
    tab = watch()
    missing = "transactions/no-such-recipe.html"
    response = tab.goto(missing)
    assert response is not None and 404 == response.status
    page = tab.page
    assert "not found" in title_of(page).lower()
    assert page.evaluate("getComputedStyle(document.querySelector('.sidebar-drawer')).display") != "inline"
    expected_404 = f"HTTP 404: {server.url}{missing}"
    assert expected_404 in tab.problems
    others = [
        p for p in tab.problems if p != expected_404 and not p.startswith("console error: Failed to load resource")
    ]
    assert [] == others
    tab.problems.clear()
    page.locator(".sidebar-brand").first.click()
    page.wait_for_load_state("load")
    assert page.url in (server.url, server.url + "index.html")
    tab.settle()
    assert_clean(tab)


# --- On recipe pages -------------------------------------------------------------------------


def _blocks(examples: list[Example]) -> list[list[Example]]:
    """The page's visible Python blocks, in page order, each as its examples."""
    blocks: dict[int, list[Example]] = {}
    for example in examples:
        if example.visible:
            blocks.setdefault(example.block, []).append(example)
    return list(blocks.values())


def _lines(code: str) -> list[str]:
    return [line.rstrip() for line in code.split("\n") if line.strip()]


def _copy(page: Page, block_index: int) -> str:
    """Click a block's copy button with the mouse, as a reader does; what the clipboard got."""
    page.evaluate("navigator.clipboard.writeText('')")
    page.locator("div.highlight-python").nth(block_index).locator("button.copybtn").click()
    copied: str = page.evaluate("navigator.clipboard.readText()")
    return copied


def _copy_all(page: Page) -> list[str]:
    """What each Python block's copy button puts on the clipboard (pressed from script: all tabs too)."""
    copied: list[str] = page.evaluate(
        """async () => {
        const copied = [];
        for (const block of document.querySelectorAll('div.highlight-python')) {
          await navigator.clipboard.writeText('');
          block.querySelector('button.copybtn').click();
          copied.push(await navigator.clipboard.readText());
        }
        return copied;
        }"""
    )
    return copied


def _tab_backends(page: Page) -> list[str]:
    """The backends of the tab-sets a reader sees now (not those inside a tab not chosen)."""
    found: list[str] = page.locator('label.sd-tab-label[data-sync-group="backend"]:visible').evaluate_all(
        "labels => [...new Set(labels.map(l => l.dataset.syncId))]"
    )
    return [b for b in BACKENDS if b in found]


def _choose(page: Page, backend: str, group: str = "backend") -> None:
    # A tab-set inside another tab that is not chosen is hidden: click one the reader can see.
    page.locator(f'label.sd-tab-label[data-sync-group="{group}"][data-sync-id="{backend}"]:visible').first.click()


def _chosen(page: Page, group: str = "backend") -> list[str]:
    """The tab each tab-set of ``group`` the reader sees shows (the backend, by default)."""
    chosen: list[str] = page.locator(".sd-tab-set").evaluate_all(
        f"""sets => sets
          .filter(s => s.querySelector(':scope > label[data-sync-group="{group}"]') && s.offsetParent !== null)
          .map(s => s.querySelector(':scope > input:checked + label').dataset.syncId)"""
    )
    return chosen


@pytest.mark.parametrize("source", RECIPES, ids=page_id)
def test_copy_buttons_copy_runnable_code(source: Path, watch: Open, built: Path, tmp_path: Path) -> None:
    """Each Python block's copy button gives its code without prompts or output; pasted in order
    (the SQLite tabs and the untabbed blocks) into a fresh Python, it runs, and fails only where
    the page shows an error."""
    tab = watch()
    tab.goto(html_name(source))
    page = tab.page
    blocks = _blocks(built_examples(built, source))
    shown = page.locator("div.highlight-python")
    assert len(blocks) == shown.count(), "the page shows another number of Python blocks than Sybil runs"

    copied = _copy_all(page)
    for index, examples in enumerate(blocks):
        expected = "\n".join(e.source for e in examples)
        got = copied[index]
        assert ">>>" not in got and not re.search(r"(?m)^\.\.\. ", got), f"line {examples[0].line}: prompts copied"
        assert _lines(expected) == _lines(got), f"line {examples[0].line}: the copy button gave other code"

    # The mouse reaches the buttons: for each backend's tab, the first block it shows.
    for backend in _tab_backends(page) or ["sqlite"]:
        if _tab_backends(page):
            _choose(page, backend)
            assert {backend} == set(_chosen(page)), f"choosing {backend} did not switch every backend tab-set"
        first = next(
            (
                i
                for i, examples in enumerate(blocks)
                if examples[0].backend in (None, backend) and shown.nth(i).is_visible()
            ),
            None,
        )
        if first is not None:
            assert copied[first] == _copy(page, first), f"line {blocks[first][0].line}: the mouse copied other code"

    # Paste what runs on SQLite, in page order, into a fresh Python process; a page with Session
    # and AsyncSession tabs is pasted once with each.
    series = page_model.installed_series()
    apis = page_model.APIS if any(e.api for examples in blocks for e in examples) else ("session",)
    for api in apis:
        runs = [i for i, examples in enumerate(blocks) if any(e.runs_on("sqlite", series, api) for e in examples)]
        folder = tmp_path / api
        folder.mkdir()
        (folder / "blocks.json").write_text(json.dumps([copied[i] for i in runs]))
        awaits = any(e.awaits for i in runs for e in blocks[i])
        done = subprocess.run(
            # A page that awaits is pasted as into `python -m asyncio`.
            [sys.executable, str(PASTE_RUNNER), "paste-asyncio" if awaits else "paste", "blocks.json", "raised.json"],
            cwd=folder,
            env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COOKBOOK_"))},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        assert 0 == done.returncode, f"{api}: {done.stdout[-3000:]}"
        raised = json.loads((folder / "raised.json").read_text())
        for position, index in enumerate(runs):
            shows = {
                (e.exc_msg or "").split(":")[0].rpartition(".")[2]
                for e in blocks[index]
                if e.exc_msg is not None and e.runs_on("sqlite", series, api)
            }
            pasted = {r["error"] for r in raised if r["block"] == position}
            assert shows == pasted, (
                f"{api}, line {blocks[index][0].line}: pasted, the block raised {sorted(pasted) or 'nothing'}; "
                f"the page shows {sorted(shows) or 'no error'}\n{done.stdout[-3000:]}"
            )
    assert_clean(tab)


def _tabbed_recipes() -> list[Path]:
    return [p for p in RECIPES if re.search(r"(?m)^:sync-group:[ \t]*backend", p.read_text())]


def test_backend_tabs_switch_together_and_are_kept_on_the_next_page(watch: Open) -> None:
    tabbed = sorted(_tabbed_recipes(), key=lambda p: -p.read_text().count(":sync-group: backend"))
    if not tabbed:
        pytest.skip("no recipe page has backend tabs yet")
    first, then = tabbed[0], tabbed[1] if len(tabbed) > 1 else tabbed[0]
    tab = watch()
    tab.goto(html_name(first))
    page = tab.page
    sets = len(_chosen(page))
    assert sets and {"sqlite"} == set(_chosen(page)), "SQLite is not the tab a new reader sees"

    _choose(page, "mariadb")
    assert ["mariadb"] * sets == _chosen(page)

    tab.goto(html_name(then))
    assert {"mariadb"} == set(_chosen(page)), f"{page_id(then)} did not keep the reader's choice"
    _choose(page, "postgresql")
    tab.goto(html_name(first))
    assert ["postgresql"] * sets == _chosen(page)
    assert_clean(tab)


def test_session_and_asyncsession_tabs_are_kept_apart_from_the_backend_tabs(watch: Open) -> None:
    """A reader who picks AsyncSession sees it on every page that has the tabs, and can still pick
    a database: the two choices are kept independently."""
    tabbed = [p for p in RECIPES if re.search(r"(?m)^:sync-group:[ \t]*api", p.read_text())]
    assert len(tabbed) >= 2, "fewer than two recipe pages have Session and AsyncSession tabs"
    both = [p for p in tabbed if re.search(r"(?m)^:sync-group:[ \t]*backend", p.read_text())] or tabbed
    first, then = both[0], next(p for p in tabbed if p != both[0])
    tab = watch()
    tab.goto(html_name(first))
    page = tab.page
    assert {"session"} == set(_chosen(page, "api")), "Session is not the tab a new reader sees"
    _choose(page, "async-session", "api")
    assert {"async-session"} == set(_chosen(page, "api"))
    if _tab_backends(page):
        _choose(page, "postgresql")
        assert {"postgresql"} == set(_chosen(page)) and {"async-session"} == set(_chosen(page, "api"))
    tab.goto(html_name(then))
    assert {"async-session"} == set(_chosen(page, "api")), f"{page_id(then)} did not keep AsyncSession"
    tab.goto(html_name(first))
    assert {"async-session"} == set(_chosen(page, "api"))
    if _tab_backends(page):
        assert {"postgresql"} == set(_chosen(page)), "choosing AsyncSession lost the reader's database"
    assert_clean(tab)


@pytest.mark.parametrize("source", RECIPES, ids=page_id)
def test_download_this_recipe(source: Path, watch: Open, built: Path, tmp_path: Path) -> None:
    """The page offers its script (a page with Session and AsyncSession tabs, one per API); each
    file downloaded is the one the build wrote, which tests/site/test_downloads.py runs on SQLite
    and checks prints what the page shows (it runs there once, browser or not)."""
    tab = watch()
    tab.goto(html_name(source))
    examples = built_examples(built, source)
    apis = page_model.APIS if any(e.api for e in examples) else ("session",)
    names = {"session": "Download this recipe", "async": "with AsyncSession"}
    for api in apis:
        link = tab.page.locator("p.recipe-download").get_by_role("link", name=names[api])
        assert 1 == link.count(), f"no link {names[api]!r}"
        with tab.page.expect_download() as download:
            link.click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        suffix = "" if api == "session" else "-async"
        offered = built / "_recipes" / source.relative_to(DOCS).with_name(f"{source.stem}{suffix}.py")
        assert offered.name == saved.name
        assert offered.read_bytes() == saved.read_bytes()
    assert_clean(tab)


def test_there_are_recipe_pages() -> None:
    assert RECIPES, f"no recipe pages under {DOCS}"
    assert ROOT.joinpath("conf.py").exists()
