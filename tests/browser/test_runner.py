"""Run, in the reader's browser: every runnable example of every recipe page, executed by Pyodide in a
headless Chromium against the built site, and checked against what the page shows.

The expectations are the Sybil run's own: the examples come from the page model
(:mod:`cookbook_site.page`, the reading the harness runs), and each doctest's output is compared
by :meth:`~cookbook_site.page.Example.matches` (Sybil's ``OutputChecker`` with the example's
option flags), as the tests compare it on the server.  A difference is reported with its page and
line, what the page shows and what the browser printed.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cookbook_site import page as page_model
from cookbook_site.page import Example
from cookbook_site.run import STATIC, runner_blocks, unavailable
from tests.browser.site import DOCS, Server, Watch, html_name, recipe_sources, runnable_recipe

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

RECIPES = recipe_sources()
#: Starting Python the first time: a cold Pyodide on a busy 2-core machine can take a while.
START_TIMEOUT_MS = 120_000
#: One block's run, once Python is up.
RUN_TIMEOUT_MS = 60_000

Open = Callable[..., Watch]


def page_id(path: Path) -> str:
    return path.relative_to(DOCS).as_posix()


@pytest.fixture(scope="module")
def shared(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    """One browser profile for the module's page runs: Pyodide comes from its cache after the first."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    context.set_default_timeout(10_000)
    yield context
    context.close()


def _bars(page: Page) -> list[dict[str, Any]]:
    bars: list[dict[str, Any]] = page.locator(".cookbook-runbar").evaluate_all(
        """bars => bars.map(b => ({
            runnable: b.dataset.runnable === 'yes',
            note: (b.querySelector('.cookbook-run-note') || {}).textContent || '',
            disabled: b.querySelector('.cookbook-run-button').disabled,
        }))"""
    )
    return bars


def _run(page: Page, index: int, timeout: float = RUN_TIMEOUT_MS) -> str:
    """Press the Run of the index-th bar and wait for it to finish; return its status line."""
    bar = page.locator(".cookbook-runbar").nth(index)
    bar.scroll_into_view_if_needed()
    bar.locator(".cookbook-run-button").click()
    page.wait_for_function(
        "bar => bar.dataset.state === 'done' || bar.dataset.state === 'failed'",
        arg=bar.element_handle(),
        timeout=timeout,
    )
    status: str = bar.locator(".cookbook-run-status").text_content() or ""
    assert "done" == bar.get_attribute("data-state"), f"Run failed: {status}"
    return status


def _results(page: Page) -> dict[int, dict[str, Any]]:
    """What the browser showed for each example, by the example's line on the page."""
    found: list[dict[str, Any]] = page.locator(".cookbook-result").evaluate_all(
        """rs => rs.map(r => ({
            line: Number(r.dataset.line),
            status: r.dataset.status,
            kind: r.dataset.kind,
            got: (r.querySelector('.cookbook-got') || {}).textContent || '',
            exception: r.dataset.exception || null,
            traceback: (r.querySelector('.cookbook-traceback') || {}).textContent || '',
            text: r.textContent,
        }))"""
    )
    return {r["line"]: r for r in found}


def expectation_problem(example: Example, result: dict[str, Any] | None) -> str | None:
    """None if the browser's result for an example passes the Sybil run's check; else what differs."""
    where = f"line {example.line}"
    if result is None:
        return f"{where}: the browser did not run this example"
    if example.kind == "code":
        if result["exception"]:
            return f"{where}: the block raised in the browser:\n{result['traceback']}{result['exception']}"
        return None
    if example.exc_msg is not None:
        got = result["exception"]
        if got is None:
            return (
                f"{where}: the page shows the exception\n{example.exc_msg}"
                f"but the browser raised none and printed\n{result['got']}"
            )
        if not page_model.output_matches(example.exc_msg, got, example.flags):
            return f"{where}: the page shows the exception\n{example.exc_msg}but the browser raised\n{got}"
        return None
    if result["exception"]:
        return (
            f"{where}: the page shows\n{example.want}but the browser raised\n{result['traceback']}{result['exception']}"
        )
    if not example.matches(result["got"]):
        return f"{where}: the page shows\n{example.want}but the browser printed\n{result['got']}"
    return None


@pytest.mark.parametrize("source", RECIPES, ids=page_id)
def test_every_example_runs_in_the_browser_as_the_page_shows(
    source: Path, shared: BrowserContext, server: Server
) -> None:
    """Run is pressed under each runnable block, in page order; every example the tests run on
    SQLite (hidden checks too) ran in the browser and printed what the page shows, up to the first
    block the browser cannot run (threads, say), whose Run bar says why."""
    examples = page_model.read(source).examples
    visible, runs = runner_blocks(examples)
    tab = Watch(shared.new_page(), server)
    try:
        tab.goto(html_name(source))
        page = tab.page
        bars = _bars(page)
        assert len(visible) == len(bars), "the page has another number of Run bars than Python blocks"
        for index, (bar, expected) in enumerate(zip(bars, visible, strict=False)):
            assert bar["runnable"] == ("run" in expected), f"bar {index}: {bar}"
            if "why" in expected:
                assert bar["disabled"] and expected["why"] == bar["note"]
        order = [i for i, bar in enumerate(bars) if bar["runnable"]]
        # A page whose every block awaits (asyncio) has nothing the browser can run; its bars say why.
        assert (
            order
            or all(e.awaits for e in examples if e.runs_on("sqlite"))
            or any(unavailable(e.source) for e in examples)
        ), "no block of the page can run in the browser"
        if not order:
            # No block the reader sees can run here (each bar says why, checked above), so nothing
            # runs, hidden blocks included.
            assert [] == tab.problems
            return
        for count, index in enumerate(order):
            _run(page, index, START_TIMEOUT_MS if count == 0 else RUN_TIMEOUT_MS)
        results = _results(page)
        problems = []
        for example in examples:
            if not example.runs_on("sqlite"):
                continue
            if any(example.block == block["block"] for block in runs):
                problem = expectation_problem(example, results.get(example.line))
                if problem:
                    problems.append(problem)
        # Only what the browser's Python cannot do (threads, processes, a server), and what comes
        # after it on the page, may be left out; its Run bar says why (checked above).
        ran = {block["block"] for block in runs}
        cannot = min((e.block for e in examples if e.runs_on("sqlite") and unavailable(e.source)), default=None)
        left_out = [
            e.line
            for e in examples
            if e.runs_on("sqlite") and e.block not in ran and (cannot is None or e.block < cannot)
        ]
        assert [] == left_out, f"examples the tests run that the browser cannot, with no reason: lines {left_out}"
        assert [] == problems, f"{page_id(source)}: the browser's run differs from the page:\n\n" + "\n\n".join(
            problems
        )
        assert [] == tab.problems
    finally:
        tab.page.close()


# --- The reader's side of it -------------------------------------------------------------------


def _first_tabbed_recipe() -> Path | None:
    return next((p for p in RECIPES if re.search(r"(?m)^:sync:[ \t]*postgresql", p.read_text())), None)


def test_nothing_of_python_loads_before_the_first_run(watch: Open) -> None:
    """The page loads its small script only; Pyodide, the wheels and the worker wait for Run."""
    tab = watch()
    tab.goto(html_name(runnable_recipe()))
    loaded = [r.url for r in tab.responses]
    on_demand = ("/_pyodide/", "/_runner/", "session.mjs", "worker.mjs", "cookbook_runner.py")
    assert [] == [u for u in loaded if any(part in u for part in on_demand)]
    assert any(u.split("?")[0].endswith("/_static/runner/runner.js") for u in loaded)

    first = next(i for i, bar in enumerate(_bars(tab.page)) if bar["runnable"])
    _run(tab.page, first, START_TIMEOUT_MS)
    tab.settle()
    fetched = {r.url.split("?")[0].rpartition("/")[2] for r in tab.responses}
    assert {
        "session.mjs",
        "worker.mjs",
        "cookbook_runner.py",
        "pyodide.mjs",
        "pyodide.asm.wasm",
        "python_stdlib.zip",
        "pyodide-lock.json",
    } <= fetched
    assert any(name.startswith("sqlalchemy-") and name.endswith(".whl") for name in fetched)
    assert [] == tab.problems


def test_edit_a_block_and_run_it_again(watch: Open) -> None:
    """The reader's own code runs in the page's state; its output and traceback show; Undo edits
    puts the page's code back and Run gives the page's output again."""
    tab = watch()
    tab.goto(html_name(runnable_recipe()))
    page = tab.page
    bars = _bars(page)
    runnable = [i for i, bar in enumerate(bars) if bar["runnable"]]
    first, second = runnable[0], runnable[1]
    _run(page, first, START_TIMEOUT_MS)

    bar = page.locator(".cookbook-runbar").nth(second)
    bar.locator(".cookbook-edit-button").click()
    editor = page.locator("textarea.cookbook-editor")
    editor.wait_for()
    assert not page.locator("div.highlight-python").nth(second).is_visible(), (
        "the page's code still shows beside the editor"
    )
    assert ">>>" not in editor.input_value(), "the editor holds code, without prompts"
    editor.fill(
        'print("edited", 6 * 7)\nsorted(k for k in globals() if k[0].isupper())[:3]\n1 / 0\n"after the error"\n'
    )
    _run(page, second)
    output = bar.locator("xpath=following-sibling::div[contains(@class, 'cookbook-output')][1]")
    results = output.locator(".cookbook-result").evaluate_all(
        "rs => rs.map(r => [r.dataset.status, (r.querySelector('.cookbook-got') || {}).textContent, r.dataset.exception || null])"
    )
    assert ["edited"] * 4 == [r[0] for r in results]
    assert "edited 42\n" == results[0][1]
    assert results[1][1].startswith("['")  # the page's own classes, defined by the first block
    assert "ZeroDivisionError: division by zero\n" == results[2][2]
    assert "'after the error'\n" == results[3][1]

    bar.locator(".cookbook-edit-button").click()  # Undo edits
    assert 0 == page.locator("textarea.cookbook-editor").count()
    assert page.locator("div.highlight-python").nth(second).is_visible()
    status = _run(page, second)
    assert status.startswith(("Ran", "Output as the page shows")), status
    assert [] == tab.problems


def test_stop_a_run_that_does_not_end(watch: Open) -> None:
    tab = watch()
    tab.goto(html_name(runnable_recipe()))
    page = tab.page
    first = next(i for i, bar in enumerate(_bars(page)) if bar["runnable"])
    bar = page.locator(".cookbook-runbar").nth(first)
    bar.locator(".cookbook-edit-button").click()
    page.locator("textarea.cookbook-editor").fill("while True:\n    pass\n")
    bar.locator(".cookbook-run-button").click()
    page.wait_for_function(
        "bar => bar.querySelector('.cookbook-run-status').textContent === 'Running…'",
        arg=bar.element_handle(),
        timeout=START_TIMEOUT_MS,
    )
    started = time.monotonic()
    page.evaluate("() => document.title")  # Python is busy in its worker; the page answers at once
    assert time.monotonic() - started < 2
    assert "Stop" == bar.locator(".cookbook-run-button").text_content()
    bar.locator(".cookbook-run-button").click()
    page.wait_for_function("bar => bar.dataset.state === 'failed'", arg=bar.element_handle())
    assert time.monotonic() - started < 5
    assert (bar.locator(".cookbook-run-status").text_content() or "").startswith("Stopped")
    bar.locator(".cookbook-edit-button").click()  # Undo edits
    status = _run(page, first, START_TIMEOUT_MS)
    assert status.startswith(("Ran", "Output as the page shows")), status
    assert [] == tab.problems


def test_server_tabs_say_run_uses_sqlite() -> None:
    source = _first_tabbed_recipe()
    if source is None:
        pytest.skip("no recipe page has a PostgreSQL tab yet")
    visible, _ = runner_blocks(page_model.read(source).examples)
    notes = [entry["why"] for entry in visible if "why" in entry]
    assert any(n.startswith("PostgreSQL only") for n in notes)
    assert all("SQLite" in n for n in notes if n.startswith(("PostgreSQL", "MariaDB")))


def test_without_webassembly_run_says_why(context: BrowserContext, server: Server) -> None:
    context.add_init_script("delete globalThis.WebAssembly;")
    page = context.new_page()
    page.goto(server.url + html_name(runnable_recipe()))
    bars = _bars(page)
    assert bars and all(bar["disabled"] for bar in bars)
    notes = {
        bar["note"]
        for bar in bars
        if "SQLite" not in bar["note"]
        and "skip" not in bar["note"]
        and "SQLAlchemy 2.0 only" not in bar["note"]
        and not bar["note"].startswith(("AsyncSession tab:", "Cannot run in your browser:"))
    }
    assert {"Run needs WebAssembly, which this browser does not offer (or has turned off)"} == notes


def test_without_javascript_the_page_is_unchanged(browser: Browser, server: Server, built: Path) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        source = runnable_recipe()
        page.goto(server.url + html_name(source))
        assert 0 == page.locator(".cookbook-runbar, .cookbook-output").count()
        examples = page_model.read(source).examples
        assert len({e.block for e in examples if e.visible}) == page.locator("div.highlight-python").count()
    finally:
        context.close()


def test_wasm_served_with_the_wrong_type_is_reported(context: BrowserContext, server: Server) -> None:
    """A server that sends .wasm as anything but application/wasm gets a message, not a silent hang."""

    def wrong_type(route: Any) -> None:
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-type": "application/octet-stream"})

    context.route("**/pyodide.asm.wasm", wrong_type)
    page = context.new_page()
    page.goto(server.url + html_name(runnable_recipe()))
    first = next(i for i, bar in enumerate(_bars(page)) if bar["runnable"])
    bar = page.locator(".cookbook-runbar").nth(first)
    bar.locator(".cookbook-run-button").click()
    page.wait_for_function("bar => bar.dataset.state === 'failed'", arg=bar.element_handle(), timeout=START_TIMEOUT_MS)
    status = bar.locator(".cookbook-run-status").text_content() or ""
    assert status.startswith("Python could not start:") and "application/wasm" in status, status


# --- What cannot run in a browser ----------------------------------------------------------------


def _example(
    line: int, block: int, source: str, backend: str | None = None, kind: str = "code", api: str | None = None
) -> Example:
    given: dict[str, Any] = {
        "start": line,
        "line": line,
        "kind": kind,
        "source": source,
        "want": "",
        "exc_msg": None,
        "options": (),
        "block": block,
        "block_line": line,
        "visible": True,
        "backend": backend,
        "skip": None,
        "api": api,
    }
    fields: dict[str, Any] = {f.name: given.get(f.name) for f in dataclasses.fields(Example)}
    return Example(**fields)


def test_threads_and_server_tabs_are_not_offered() -> None:
    examples = [
        _example(1, 0, "x = 1\n"),
        _example(5, 1, "x\n", backend="sqlite", kind="doctest"),
        _example(9, 2, "x\n", backend="postgresql", kind="doctest"),
        _example(13, 3, "from concurrent.futures import ThreadPoolExecutor\n"),
        _example(17, 4, "print(x)\n"),
    ]
    visible, runs = runner_blocks(examples)
    assert [0, 1] == [block["block"] for block in runs]
    assert {"run": 0} == visible[0] and {"run": 1} == visible[1]
    assert visible[2]["why"].startswith("PostgreSQL only")
    assert "threads" in visible[3]["why"]
    assert "line 13" in visible[4]["why"]


def test_the_asyncsession_tab_says_why_and_the_session_tab_runs() -> None:
    """On a page with Session and AsyncSession tabs, Run runs the Session tab; the AsyncSession
    tab's bar says why it cannot, and what follows the tabs still runs."""
    examples = [
        _example(1, 0, "x = 1\n"),
        _example(5, 1, "session.scalar(q)\n", kind="doctest", api="session"),
        _example(9, 2, "await session.scalar(q)\n", kind="doctest", api="async"),
        _example(13, 3, "print(x)\n"),
    ]
    visible, runs = runner_blocks(examples)
    assert [0, 1, 3] == [block["block"] for block in runs]
    assert "api" == visible[2]["kind"] and visible[2]["why"].startswith("AsyncSession tab: in your browser")
    assert {"run": 2} == visible[3]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("import threading\n", "threads"),
        ("from sqlalchemy.ext.asyncio import create_async_engine\n", "greenlet"),
        ("import multiprocessing as mp\n", "processes"),
        ("from sqlalchemy import select\nimport json\n", None),
    ],
)
def test_unavailable(source: str, reason: str | None) -> None:
    why = unavailable(source)
    assert (why is None) if reason is None else (why is not None and reason in why)


# --- The browser's runner, on this Python ----------------------------------------------------------

RUNNER_PY = STATIC / "runner" / "cookbook_runner.py"

_ON_CPYTHON = r"""
import json, sys
from dataclasses import asdict
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import cookbook_runner
from cookbook_site import page as page_model
from cookbook_site.run import runner_blocks

report = {}
for path in sys.argv[2:]:
    _, runs = runner_blocks(page_model.read(path).examples)
    cookbook_runner.start(Path(path).name)
    for block in runs:
        result = json.loads(cookbook_runner.run_block(json.dumps(block)))
        for example, got in zip(block["examples"], result["results"]):
            report[f"{path}:{example['line']}"] = got["status"]
print(json.dumps(report))
"""


def test_the_runner_agrees_with_sybil_on_this_python(tmp_path: Path) -> None:
    """cookbook_runner.py is plain Python: on the server's CPython, in a fresh process, every
    example of every recipe page passes its own check there as it passes Sybil's."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _ON_CPYTHON, str(RUNNER_PY.parent), *map(str, RECIPES)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    statuses = json.loads(done.stdout.strip().splitlines()[-1])
    assert statuses
    assert {} == {where: status for where, status in statuses.items() if status not in ("match", "ran", "skipped")}


def test_a_difference_names_the_line_and_both_outputs() -> None:
    example = dataclasses.replace(
        _example(40, 1, "session.scalars(select(User.name)).all()\n", kind="doctest"), want="['Ada']\n"
    )
    result = {"got": "['Ada', 'Grace']\n", "exception": None, "traceback": ""}
    problem = expectation_problem(example, result)
    assert problem is not None and problem.startswith("line 40:") and "['Ada', 'Grace']" in problem
    assert expectation_problem(example, {**result, "got": "['Ada']\n"}) is None
    assert "did not run" in (expectation_problem(example, None) or "")
