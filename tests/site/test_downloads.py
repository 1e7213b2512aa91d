"""The "Download this recipe" scripts: each holds what the tests run, and runs as the page says."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cookbook_site import page as page_model
from cookbook_site.downloads import OUTPUT_FOLDER, SCRIPT_SERIES, SUFFIXES, output_problem, render_script
from cookbook_site.page import Example
from tests.browser.site import build_site

DOCS = Path(__file__).resolve().parents[2] / "docs"
RECIPES = page_model.recipe_pages(DOCS)
#: Each recipe page's scripts: one, or for a page with Session and AsyncSession tabs, one per API.
SCRIPTS = [
    (path, api)
    for path in RECIPES
    for api in (page_model.APIS if page_model.apis_of(page_model.read(path)) == page_model.APIS else ("session",))
]


def page_id(path: Path) -> str:
    return path.relative_to(DOCS).as_posix()


def script_id(script: tuple[Path, str]) -> str:
    path, api = script
    return page_id(path) + ("" if api == "session" else f"-{api}")


def script_of(path: Path, api: str = "session") -> tuple[list[Example], str]:
    examples = list(page_model.read(path).examples)
    return examples, render_script(examples, title="t", where=page_id(path), api=api)


def run_script(script: str) -> subprocess.CompletedProcess[str]:
    """Run a script as a reader would: a fresh interpreter, in an empty directory of its own."""
    with tempfile.TemporaryDirectory(prefix="cookbook-script-") as folder:
        path = Path(folder) / "recipe.py"
        path.write_text(script)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COOKBOOK_"))}
        return subprocess.run(
            [sys.executable, "-u", str(path)],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # tracebacks, in order with what was printed
            text=True,
            timeout=120,
        )


def offered(site: Path, path: Path, api: str) -> Path:
    """The script a built site offers for a page and API (the browser tests download it from there)."""
    return site / OUTPUT_FOLDER / path.relative_to(DOCS).with_name(f"{path.stem}{SUFFIXES[api]}.py")


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[Path, str], subprocess.CompletedProcess[str]]]:
    """Every script the site offers for download, as the build wrote it, each run once, several at a time."""
    site = build_site(tmp_path_factory.mktemp("downloads") / "html")

    def run(script: tuple[Path, str]) -> subprocess.CompletedProcess[str]:
        return run_script(offered(site, *script).read_text(encoding="utf-8"))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        done = dict(zip(SCRIPTS, pool.map(run, SCRIPTS), strict=True))
    yield done


@pytest.mark.parametrize("script", SCRIPTS, ids=script_id)
def test_script_runs_as_the_page_says(
    script: tuple[Path, str], runs: dict[tuple[Path, str], subprocess.CompletedProcess[str]]
) -> None:
    """The downloaded script exits 0 on SQLite and prints, in order, the output the page shows
    (in its Session tabs, or in the AsyncSession script, its AsyncSession tabs)."""
    path, api = script
    examples, _ = script_of(path, api)
    run = runs[script]
    assert 0 == run.returncode, f"{script_id(script)}: the script failed:\n{run.stdout[-3000:]}"
    problem = output_problem(examples, run.stdout, api=api)
    assert problem is None, f"{script_id(script)}, {problem}"


def test_there_are_recipe_pages() -> None:
    assert RECIPES, f"no recipe pages under {DOCS}"


# --- How a page becomes a script, on a page made up for the purpose --------------------------

PAGE = """\
(recipe-made-up)=
# Does the made-up page work?

Yes.

## The model

```python
>>> from sqlalchemy import create_engine, text
>>> engine = create_engine("sqlite://")
>>> with engine.connect() as connection:
...     connection.scalar(text("select 1")), "one"
...
(1, 'one')
>>> print("printed")
printed
>>> len([1, 2])
2
```

% invisible-code-block: python
%
% assert engine.dialect.name == "sqlite"

::::{tab-set}
:sync-group: backend

:::{tab-item} SQLite
:sync: sqlite

```python
>>> engine.dialect.name
'sqlite'
```
:::

:::{tab-item} PostgreSQL
:sync: postgresql

```python
>>> engine.dialect.name
'postgresql'
```
:::
::::

## Errors

```python
>>> int("x")
Traceback (most recent call last):
...
ValueError: invalid literal for int() with base 10: 'x'
>>> import sqlalchemy.exc
>>> raise sqlalchemy.exc.NoResultFound("none")
Traceback (most recent call last):
...
sqlalchemy.exc.NoResultFound: none
```

% skip: next "would wait forever"

```python
input()
```

```python
def show():
    return "the page's own show()"
```
"""


@pytest.fixture(scope="module")
def made_up() -> tuple[list[Example], str]:
    examples = list(page_model.read("made-up.md", text=PAGE).examples)
    return examples, render_script(examples, title="Does the made-up page work?", where="made-up")


def test_examples_of_a_page(made_up: tuple[list[Example], str]) -> None:
    """Each `>>>` prompt is one example; hidden, tabbed and skipped ones are marked as such."""
    examples, _ = made_up
    assert [
        (9, "doctest", True, None, None),
        (10, "doctest", True, None, None),
        (11, "doctest", True, None, None),
        (15, "doctest", True, None, None),
        (17, "doctest", True, None, None),
        (21, "code", False, None, None),
        (32, "doctest", True, "sqlite", None),
        (41, "doctest", True, "postgresql", None),
        (50, "doctest", True, None, None),
        (54, "doctest", True, None, None),
        (55, "doctest", True, None, None),
        (63, "code", True, None, "would wait forever"),
        (67, "code", True, None, None),
    ] == [(e.line, e.kind, e.visible, e.backend, e.skip) for e in examples]


def test_prompts_go_and_output_stays_as_comments(made_up: tuple[list[Example], str]) -> None:
    _, script = made_up
    assert ">>>" not in script and "\n... " not in script
    assert "#> (1, 'one')\n" in script
    assert "#> ValueError: invalid literal for int() with base 10: 'x'\n" in script


def test_echoed_values_are_shown(made_up: tuple[list[Example], str]) -> None:
    """What the prompt echoes is printed by a helper; a bare tuple stays one value; print() is left alone."""
    _, script = made_up
    assert '    show_value((connection.scalar(text("select 1")), "one"))\n' in script
    assert "show_value(len([1, 2]))\n" in script
    assert '\nprint("printed")\n' in script
    # The page defines its own show(), so the helper takes another name.
    assert "def show_value(value: object) -> None:" in script


def test_expected_errors_are_caught_and_printed(made_up: tuple[list[Example], str]) -> None:
    _, script = made_up
    assert 'try:\n    int("x")\nexcept ValueError:\n    traceback.print_exc()' in script
    assert "except sqlalchemy.exc.NoResultFound:\n" in script
    assert "\nimport traceback\nimport sqlalchemy.exc\n" in script


def test_other_backends_are_left_out_and_skips_commented(made_up: tuple[list[Example], str]) -> None:
    _, script = made_up
    assert "'postgresql'" not in script
    left_out = (
        f"# (The page's PostgreSQL tab is left out here: this script runs on SQLite and SQLAlchemy {SCRIPT_SERIES}.)"
    )
    assert left_out in script
    assert "# The tests skip this example (would wait forever):\n# input()\n" in script
    assert '# A check the page runs without showing it:\nassert engine.dialect.name == "sqlite"\n' in script
    assert "# ---- Errors ----" not in script  # no doctree here, so no section headings


def test_made_up_script_runs_as_its_page_says(made_up: tuple[list[Example], str]) -> None:
    examples, script = made_up
    run = run_script(script)
    assert 0 == run.returncode, run.stdout
    assert None is output_problem(examples, run.stdout)


def test_a_difference_is_reported_with_its_line(made_up: tuple[list[Example], str]) -> None:
    examples, script = made_up
    run = run_script(script.replace('print("printed")', 'print("something else")'))
    problem = output_problem(examples, run.stdout)
    assert problem is not None and problem.startswith("line 15: the page shows\nprinted\n")


ASYNC_PAGE = """\
# Does an async page download?

```python
>>> import asyncio
>>> from sqlalchemy import text
>>> from sqlalchemy.ext.asyncio import create_async_engine
>>> engine = create_async_engine("sqlite+aiosqlite://")
>>> async with engine.connect() as conn:
...     (await conn.execute(text("select 41 + 1"))).scalar()
42
>>> await engine.dispose()
>>> await asyncio.sleep(0, "shown")
'shown'
```
"""


def test_an_async_page_downloads_as_a_script_under_asyncio_run() -> None:
    """Examples typed as into `python -m asyncio` become one coroutine that asyncio.run() runs,
    and the script prints what the page shows."""
    examples = list(page_model.read("async.md", text=ASYNC_PAGE).examples)
    script = render_script(examples, title="t", where="async.md")
    assert "\nasync def main() -> None:\n" in script and script.endswith("\nasyncio.run(main())\n")
    run = run_script(script)
    assert 0 == run.returncode, run.stdout
    assert None is output_problem(examples, run.stdout)


API_PAGE = """\
# Does a page with Session and AsyncSession tabs download?

```python
>>> from sqlalchemy import text
```

::::{tab-set}
:sync-group: api

:::{tab-item} Session
:sync: session

```python
>>> from sqlalchemy import create_engine
>>> with create_engine("sqlite://").connect() as conn:
...     conn.scalar(text("select 'session'"))
'session'
```
:::

:::{tab-item} AsyncSession
:sync: async-session

```python
>>> from sqlalchemy.ext.asyncio import create_async_engine
>>> engine = create_async_engine("sqlite+aiosqlite://")
>>> async with engine.connect() as conn:
...     await conn.scalar(text("select 'async'"))
'async'
>>> await engine.dispose()
```
:::
::::

```python
>>> print("both")
both
```
"""


@pytest.mark.parametrize("api", page_model.APIS)
def test_each_api_gets_its_own_script(api: str) -> None:
    """A page with Session and AsyncSession tabs downloads as two scripts: each holds what the
    page shares and its own tab, says which tab it left out, and prints what the page shows."""
    examples = list(page_model.read("apis.md", text=API_PAGE).examples)
    script = render_script(examples, title="t", where="apis.md", api=api)
    other = "AsyncSession" if api == "session" else "Session"
    assert f"# (The page's {other} tab is left out here" in script
    assert ("asyncio.run(main())" in script) == (api == "async")
    run = run_script(script)
    assert 0 == run.returncode, run.stdout
    assert None is output_problem(examples, run.stdout, api=api)
    assert ("'async'" in run.stdout, "'session'" in run.stdout) == (api == "async", api == "session")


def test_an_async_page_may_import_what_the_script_uses_itself() -> None:
    """A page that imports `traceback` (or `asyncio`) after an error the script prints with it still
    runs: the names are global in main(), as they are at the `python -m asyncio` prompt."""
    page = ASYNC_PAGE.replace(
        ">>> await asyncio.sleep(0, \"shown\")\n'shown'\n",
        ">>> int('x')\nTraceback (most recent call last):\n...\n"
        "ValueError: invalid literal for int() with base 10: 'x'\n"
        ">>> import traceback\n>>> await asyncio.sleep(0, \"shown\")\n'shown'\n",
    )
    examples = list(page_model.read("async.md", text=page).examples)
    script = render_script(examples, title="t", where="async.md")
    assert "    global asyncio, traceback  # the page imports these too\n" in script
    run = run_script(script)
    assert 0 == run.returncode, run.stdout
    assert None is output_problem(examples, run.stdout)
