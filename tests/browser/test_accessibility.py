"""Accessibility of the built site, in headless Chromium: axe-core's WCAG 2.0 and 2.1 A and AA
rules on every page, light and dark, and the keyboard alone on a recipe page.

axe-core comes inside the axe-playwright-python package (requirements.txt) and is evaluated in
the page: nothing is fetched.  A violation fails the test of its page and theme, naming the rule,
the element (its CSS path and HTML) and what axe asks for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from axe_playwright_python.base import AXE_SCRIPT  # type: ignore[import-untyped]

from cookbook_site import page as page_model
from tests.browser.site import DOCS, Server, Watch, html_name, recipe_sources, runnable_recipe

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

RECIPES = recipe_sources()
THEMES = ("light", "dark")
#: WCAG 2.0 and 2.1, levels A and AA, as axe-core tags its rules.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
#: The search page with results on it, and the 404 page as a reader meets it (in a subfolder).
SEARCH = "search.html?q=session+rollback"
MISSING = "transactions/no-such-recipe.html"

Open = Callable[..., Watch]


def axe_pages() -> list[str]:
    """Every page of the site: the index, search (empty and with results), the indexes, the 404
    page, and each page under docs/."""
    pages = ["index.html", "search.html", SEARCH, "genindex.html", "py-modindex.html", MISSING]
    for path in page_model.pages(DOCS):
        name = html_name(path)
        if name not in pages:
            pages.append(name)
    return pages


PAGES = axe_pages()


# --- axe -----------------------------------------------------------------------------------------

#: Code blocks are most of a recipe page's elements, and of axe's time: each Pygments token is a
#: <span> whose contrast axe computes.  That contrast depends on the span's colour, font and the
#: background behind it alone, so of the token spans alike in all of these, the first on the page
#: is kept and the others become plain text of their block (which axe checks in the block's own
#: colour) before axe runs: a token of too little contrast still fails, on its first span, and
#: the check costs half the time.  (axe's own ``exclude`` would cost more than it saves: it
#: compares every element with every excluded one.)  The tab is thrown away afterwards.
_FLATTEN_ALIKE_TOKENS = """() => {
  const ground = e => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;
                        if (c !== 'transparent' && !/^rgba\\(.*,\\s*0\\)$/.test(c)) return c; } return ''; };
  const seen = new Set();
  for (const span of document.querySelectorAll('.highlight pre span')) {
    if (span.firstElementChild) continue;
    const s = getComputedStyle(span);
    const key = [s.color, s.fontSize, s.fontWeight, s.fontStyle, s.opacity, s.textShadow, ground(span)].join('|');
    if (seen.has(key)) span.replaceWith(span.textContent); else seen.add(key);
  }
}"""

_START = """options => {
  window.__cookbookAxe = axe.run(document, options).then(
    results => ({version: axe.version, violations: results.violations.map(v => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html, summary: n.failureSummary})),
    }))}),
    error => ({error: String(error)}));
}"""


def start_axe(page: Page, flatten: bool = False) -> None:
    """Start axe-core's WCAG 2.1 A/AA rules on the page as it is now (``flatten``: with the code's
    alike tokens made plain text first); :func:`axe_problems` waits for them."""
    if not page.evaluate("() => typeof axe === 'object'"):
        page.evaluate(AXE_SCRIPT)
    if flatten:
        page.evaluate(_FLATTEN_ALIKE_TOKENS)
    page.evaluate(_START, {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]})


def axe_problems(page: Page, where: str) -> list[str]:
    """What the run :func:`start_axe` began found: one line per element, naming page, rule and element."""
    found: dict[str, Any] = page.evaluate("() => window.__cookbookAxe")
    if "error" in found:
        return [f"{where}: axe did not run: {found['error']}"]
    problems = []
    for violation in found["violations"]:
        for node in violation["nodes"]:
            snippet = re.sub(r"\s+", " ", node["html"])[:200]
            problems.append(
                f"{where}: {violation['id']} ({violation['impact']}) at `{node['target']}`: {snippet}\n"
                f"    {violation['help']}; {' '.join(node['summary'].split())}"
            )
    return problems


def axe_now(page: Page, where: str) -> list[str]:
    start_axe(page)
    return axe_problems(page, where)


def themed_context(browser: Browser, theme: str) -> BrowserContext:
    """A profile whose reader chose furo's light or dark theme (furo keeps the choice in localStorage)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    context.set_default_timeout(15_000)
    context.add_init_script(f"localStorage.setItem('theme', '{theme}')")
    return context


def _open(page: Page, server: Server, name: str, theme: str) -> str | None:
    """Open a page for axe and wait until it is complete; None, or what went wrong."""
    response = page.goto(server.url + name, wait_until="load")
    expected = 404 if name == MISSING else 200
    if response is None or response.status != expected:
        return f"{name}: HTTP {response.status if response else 'no response'}, expected {expected}"
    if name.startswith("search.html?"):
        page.wait_for_function(
            "() => { const s = document.querySelector('#search-results .search-summary');"
            " return s && /finished/.test(s.textContent); }"
        )
        if not page.locator("#search-results ul.search > li").count():
            return f"{name}: the search page shows no results to check"
    shown = page.evaluate("() => document.body.dataset.theme")
    if shown != theme:
        return f"{name}: furo shows the {shown!r} theme, not {theme!r}"
    return None


class AxeScan:
    """The pages the session's tests ask for, checked in order in one tab per theme (each in a
    profile of its own, so the two run at once, in two processes), the next page started in a
    tab as soon as its last result is read."""

    def __init__(self, browser: Browser, server: Server, wanted: list[tuple[str, str]]) -> None:
        self.server = server
        self.contexts = {theme: themed_context(browser, theme) for theme in THEMES}
        self.tabs = {theme: context.new_page() for theme, context in self.contexts.items()}
        self.waiting = {theme: [name for each, name in wanted if each == theme] for theme in THEMES}
        self.running: dict[str, str | None] = dict.fromkeys(THEMES)
        self.results: dict[tuple[str, str], list[str]] = {}

    def _start(self, theme: str) -> None:
        """Open the theme's next page and start axe on it (a page that fails to open is its result)."""
        while self.running[theme] is None and self.waiting[theme]:
            name = self.waiting[theme].pop(0)
            failed = _open(self.tabs[theme], self.server, name, theme)
            if failed:
                self.results[theme, name] = [failed]
            else:
                start_axe(self.tabs[theme], flatten=True)
                self.running[theme] = name

    def problems(self, theme: str, name: str) -> list[str]:
        if (theme, name) not in self.results and self.running[theme] != name:
            if name in self.waiting[theme]:
                self.waiting[theme].remove(name)
            self.waiting[theme].insert(0, name)  # asked for out of order: next
        while (theme, name) not in self.results:
            for each in THEMES:
                self._start(each)
            running = self.running[theme]
            if running is None:
                raise AssertionError(f"{name} ({theme}) was never checked")
            self.results[theme, running] = axe_problems(self.tabs[theme], f"{running} ({theme})")
            self.running[theme] = None
            self._start(theme)  # the next page runs while the other theme's result is read
        return self.results[theme, name]

    def close(self) -> None:
        for context in self.contexts.values():
            context.close()


@pytest.fixture(scope="module")
def axe_scan(browser: Browser, server: Server, request: pytest.FixtureRequest) -> Iterator[AxeScan]:
    """The axe checks of the pages and themes this session's tests ask for, in their order."""
    wanted = [
        (str(item.callspec.params["theme"]), str(item.callspec.params["name"]))
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == test_axe_finds_no_wcag_21_aa_violation.__name__
    ]
    scan = AxeScan(browser, server, wanted)
    yield scan
    scan.close()


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("name", PAGES)
def test_axe_finds_no_wcag_21_aa_violation(name: str, theme: str, axe_scan: AxeScan) -> None:
    """axe-core's WCAG 2.0/2.1 A and AA rules find nothing on the page, in furo's light or dark theme."""
    problems = axe_scan.problems(theme, name)
    assert [] == problems, f"{len(problems)} accessibility problem(s):\n" + "\n".join(problems)


def _written(built: Path) -> list[Path]:
    return [p for p in sorted(built.rglob("*.html")) if not p.relative_to(built).as_posix().startswith("_")]


def test_every_page_the_build_writes_is_checked(built: Path) -> None:
    written = {p.relative_to(built).as_posix() for p in _written(built)}
    checked = {name.partition("?")[0] for name in PAGES} - {MISSING} | {"404.html"}
    assert set() == written - checked, "pages the accessibility test does not open"


def test_the_html_carries_the_fixes_without_javascript(built: Path) -> None:
    """In the HTML as written (cookbook_site.a11y), at every width: each heading role has its
    level, and each code block can take the focus and has a name."""
    problems = []
    for path in _written(built):
        html = path.read_text(encoding="utf-8")
        name = path.relative_to(built).as_posix()
        for tag in re.findall(r"<[a-z][^>]*\brole=\"heading\"[^>]*>", html):
            if "aria-level=" not in tag:
                problems.append(f"{name}: {tag}")
        for tag in re.findall(r"<pre\b[^>]*>", html):
            if 'tabindex="0"' not in tag or "aria-label=" not in tag:
                problems.append(f"{name}: {tag}")
    assert [] == problems


# --- The keyboard alone ------------------------------------------------------------------------

#: What has the focus, and whether a reader can see that: the ring (an outline at least 2 px wide,
#: at least 3:1 against what is behind it) on the element, on a tab's label for sphinx-design's
#: hidden radio buttons, or on an element around it (furo's search box).
_FOCUSED = """() => {
  document.getAnimations().forEach(a => a.finish());  // as it looks once a fade or slide is over
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const rgba = c => { const m = (c.match(/[\\d.]+/g) || ['0', '0', '0', '0']).map(Number);
                      return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1}; };
  const lum = c => [c.r, c.g, c.b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
                                 .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const contrast = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const behind = e => { for (; e; e = e.parentElement) { const c = rgba(getComputedStyle(e).backgroundColor); if (c.a > 0.5) return c; }
                        return {r: 255, g: 255, b: 255, a: 1}; };
  const shown = e => { const r = e.getBoundingClientRect(); if (!r.width || !r.height) return false;
                       for (; e; e = e.parentElement) { const s = getComputedStyle(e); if (Number(s.opacity) < 0.9 || s.visibility === 'hidden') return false; }
                       return true; };
  const candidates = [el];
  if (el.matches('.sd-tab-set > input')) candidates.unshift(el.nextElementSibling);
  for (let up = el.parentElement, n = 0; up && n < 2; up = up.parentElement, n++) candidates.push(up);
  let ring = null;
  for (const c of candidates) {
    const s = getComputedStyle(c);
    if (s.outlineStyle === 'none' || parseFloat(s.outlineWidth) < 2) continue;
    const ground = behind(parseFloat(s.outlineOffset) < 0 ? c : c.parentElement);
    ring = {on: c === el ? 'itself' : c.tagName.toLowerCase() + '.' + [...c.classList].join('.'),
            width: parseFloat(s.outlineWidth), contrast: contrast(rgba(s.outlineColor), ground), shown: shown(c)};
    break;
  }
  const kind = el.matches('.highlight pre') ? 'code' : el.matches('button.copybtn') ? 'copy'
    : el.matches('.cookbook-run-button') ? 'run' : el.matches('.cookbook-edit-button') ? 'edit'
    : el.matches('.sd-tab-set > input') ? 'tab' : el.matches('.theme-toggle') ? 'theme'
    : el.matches('.sidebar-search') ? 'search' : el.matches('a') ? 'link' : el.tagName.toLowerCase();
  const html = el.outerHTML.replace(/\\s+/g, ' ');
  return {kind, ring, html: html.slice(0, Math.min(html.indexOf('>') + 1 || 160, 160))};
}"""


_OVERFLOWS = "() => document.activeElement.scrollWidth > document.activeElement.clientWidth + 1"


def _visible_focus_problem(focused: dict[str, Any]) -> str | None:
    ring = focused["ring"]
    if ring is None:
        return "no focus ring"
    if not ring["shown"]:
        return f"the ring (on {ring['on']}) is not shown"
    if ring["contrast"] < 3:
        return f"the ring (on {ring['on']}) has {ring['contrast']:.2f}:1 against its background, under 3:1"
    return None


def _focus(page: Page) -> dict[str, Any] | None:
    """The focused element, as :data:`_FOCUSED` sees it (None: the focus left the page)."""
    focused: dict[str, Any] | None = page.evaluate(_FOCUSED)
    return focused


def tab_to(page: Page, selector: str, limit: int = 400) -> int:
    """Press Tab until the focus is on an element matching ``selector``; how many presses it took."""
    for presses in range(1, limit + 1):
        page.keyboard.press("Tab")
        if page.evaluate("s => !!document.activeElement && document.activeElement.matches(s)", selector):
            return presses
    raise AssertionError(f"{limit} presses of Tab never reached {selector}")


def _tabbed_recipe() -> Path:
    tabbed = [p for p in RECIPES if re.search(r"(?m)^:sync-group:[ \t]*backend", p.read_text())]
    return tabbed[0] if tabbed else runnable_recipe()


@pytest.mark.parametrize("theme", THEMES)
def test_tab_reaches_every_control_with_a_visible_focus(theme: str, browser: Browser, server: Server) -> None:
    """From the top of a recipe page, Tab alone visits the skip link, search, theme button, the
    sidebar, each code block (so the arrow keys scroll it), its copy button, Run and Edit, and
    the backend tabs; each shows a ring a reader can see, in light and in dark."""
    context = themed_context(browser, theme)
    try:
        tab = Watch(context.new_page(), server)
        tab.goto(html_name(_tabbed_recipe()))
        page = tab.page
        kinds: set[str] = set()
        problems = []
        first = None
        scrolled = None  # how far the arrow keys scrolled the first code block wider than its box
        for _ in range(600):
            page.keyboard.press("Tab")
            focused = _focus(page)
            if focused is None or focused["html"] == first:
                break  # past the last control, or round to the first again
            first = first or focused["html"]
            kinds.add(focused["kind"])
            problem = _visible_focus_problem(focused)
            if problem:
                problems.append(f"{focused['kind']} {focused['html']}: {problem}")
            if scrolled is None and focused["kind"] == "code" and page.evaluate(_OVERFLOWS):
                for _ in range(3):
                    page.keyboard.press("ArrowRight")
                scrolled = page.wait_for_function("() => document.activeElement.scrollLeft").json_value()
        assert [] == problems, f"focus not visible in the {theme} theme:\n" + "\n".join(problems)
        assert {"link", "search", "theme", "code", "copy", "run", "edit", "tab"} <= kinds
        assert scrolled is None or scrolled > 0, "the arrow keys did not scroll a focused code block"
        assert [] == tab.problems
    finally:
        context.close()


def _chosen(page: Page) -> list[str]:
    chosen: list[str] = page.locator(".sd-tab-set").evaluate_all(
        """sets => sets.filter(s => s.querySelector(':scope > label[data-sync-group="backend"]'))
                       .map(s => s.querySelector(':scope > input:checked + label').dataset.syncId)"""
    )
    return chosen


def test_backend_tabs_switch_from_the_keyboard(watch: Open) -> None:
    """Tab reaches a backend tab-set; the arrow keys choose a tab, and every backend tab-set on
    the page follows, as a click does."""
    source = _tabbed_recipe()
    if not re.search(r"(?m)^:sync-group:[ \t]*backend", source.read_text()):
        pytest.skip("no recipe page has backend tabs yet")
    tab = watch()
    tab.goto(html_name(source))
    page = tab.page
    sets = len(_chosen(page))
    tab_to(page, '.sd-tab-set > input:has(+ label[data-sync-group="backend"])')
    assert "sqlite" == page.evaluate("() => document.activeElement.nextElementSibling.dataset.syncId")
    page.keyboard.press("ArrowRight")
    label = page.evaluate("() => document.activeElement.nextElementSibling.dataset.syncId")
    assert "sqlite" != label, "the arrow key did not move to the next tab"
    assert [label] * sets == _chosen(page), "the other backend tab-sets did not follow the keyboard"
    focused = _focus(page)
    assert focused is not None and _visible_focus_problem(focused) is None, focused
    page.keyboard.press("ArrowLeft")
    assert ["sqlite"] * sets == _chosen(page)
    assert [] == tab.problems


def test_run_and_edit_from_the_keyboard_alone(browser: Browser, server: Server) -> None:
    """Tab to the first Run, press Enter: the bar's live region announces the result; Tab to
    Edit, press Space: the editor has the focus; type, Ctrl+Enter runs it and the result is
    announced; Undo edits from the keyboard.  Run and Edit say what they do; axe finds nothing
    on the page with the output and the editor shown, in the dark theme and the light."""
    from playwright.sync_api import expect

    context = themed_context(browser, "dark")
    try:
        tab = Watch(context.new_page(), server)
        tab.goto(html_name(runnable_recipe()))
        page = tab.page
        tab_to(page, ".cookbook-run-button:not(:disabled)")
        index = page.evaluate(
            "() => [...document.querySelectorAll('.cookbook-runbar')].indexOf(document.activeElement.closest('.cookbook-runbar'))"
        )
        bar = page.locator(".cookbook-runbar").nth(index)
        run = bar.locator(".cookbook-run-button")
        live = bar.locator('[aria-live="polite"]')
        expect(bar).to_have_role("group")
        expect(bar).to_have_accessible_name("Run this example in your browser")
        expect(run).to_have_accessible_name("Run")
        expect(run).to_have_accessible_description("Run the page's examples up to this one, in your browser")
        expect(live).to_have_role("status")

        page.keyboard.press("Enter")
        page.wait_for_function(
            "bar => ['done', 'failed'].includes(bar.dataset.state)", arg=bar.element_handle(), timeout=120_000
        )
        announced = live.text_content() or ""
        assert re.fullmatch(r"(Output as the page shows|Ran) · [\d.]+ s", announced), announced
        output = page.locator("#" + (run.get_attribute("aria-controls") or ""))
        assert output.is_visible() and "In your browser: Python" in (output.text_content() or "")

        page.keyboard.press("Tab")
        edit = bar.locator(".cookbook-edit-button")
        assert edit.evaluate("e => e === document.activeElement"), "Tab did not go from Run to Edit"
        expect(edit).to_have_text("Edit")
        expect(edit).to_have_accessible_description("Change this example, then run it")
        page.keyboard.press("Space")
        editor = page.locator("textarea.cookbook-editor")
        editor.wait_for()
        assert page.evaluate("() => document.activeElement.matches('textarea.cookbook-editor')")
        expect(editor).to_have_accessible_name(re.compile(r"Ctrl\+Enter runs it"))
        expect(live).to_have_text(re.compile("^Editing"))
        page.keyboard.press("ControlOrMeta+a")
        page.keyboard.type("print('typed', 6 * 7)\n")
        page.keyboard.press("Control+Enter")
        expect(live).to_have_text(re.compile(r"^Ran your edited code · [\d.]+ s$"), timeout=60_000)
        assert "typed 42" in (output.text_content() or "")

        problems = axe_now(page, f"{html_name(runnable_recipe())} after Run and Edit (dark)")
        # furo's theme button, as the reader presses it; the colours' transitions run to their end.
        page.evaluate(
            "() => { document.body.dataset.theme = 'light'; getComputedStyle(document.body).color;"
            " document.getAnimations().forEach(a => a.finish()); }"
        )
        problems += axe_now(page, f"{html_name(runnable_recipe())} after Run and Edit (light)")
        assert [] == problems, "\n".join(problems)

        tab_to(page, ".cookbook-edit-button", limit=5)  # from the editor: Run, then Edit
        expect(edit).to_have_text("Undo edits")
        assert edit.evaluate("e => e === document.activeElement")
        page.keyboard.press("Enter")
        assert 0 == editor.count()
        expect(live).to_have_text("The page's code is back")
        page.keyboard.press("Tab")  # next: the output, which scrolls sideways as one box
        assert output.evaluate("e => e === document.activeElement"), "Tab did not reach the output"
        expect(output).to_have_accessible_name("Output of this example in your browser")
        focused = _focus(page)
        assert focused is not None and _visible_focus_problem(focused) is None, focused
        assert [] == tab.problems
    finally:
        context.close()
