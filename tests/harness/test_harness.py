"""The harness's own promises: clear errors for bad input, and no expected output left unchecked."""

import unittest
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sybil import Document
from sybil.example import SybilFailure

from cookbook_site import page as page_model
from tests.harness.backends import Backend, BackendError, selected_names, summary_line
from tests.harness.pages import _setup, _teardown, install_create_engine, page_parsers

EXEMPLAR = Path(__file__).resolve().parents[2] / "docs" / "transactions" / "delete-reinsert.md"


def test_default_backend_is_sqlite() -> None:
    """With nothing configured, the pages run on SQLite and need no server."""
    assert ["sqlite"] == selected_names("")


def test_backends_are_read_in_order_without_repeats() -> None:
    """`make test BACKENDS="sqlite postgresql"` and a comma list mean the same."""
    assert ["sqlite", "postgresql"] == selected_names("sqlite, postgresql sqlite")


def test_unknown_backend_lists_the_valid_ones() -> None:
    """A typo is an error that says what would have been accepted."""
    with pytest.raises(BackendError) as info:
        selected_names("sqlite postgres")
    assert "unknown backend 'postgres' in COOKBOOK_BACKENDS; valid backends are: sqlite, postgresql, mariadb" == str(
        info.value
    )


def test_unreachable_backend_names_backend_and_url() -> None:
    """A named server that is down stops the run with its name and URL, never a silent skip."""
    backend = Backend("postgresql", make_url("postgresql+psycopg://postgres@127.0.0.1:1/test"))
    with pytest.raises(BackendError) as info:
        backend.check()
    first_line = str(info.value).splitlines()[0]
    assert first_line.startswith(
        "backend postgresql is unreachable at postgresql+psycopg://postgres@127.0.0.1:1/test: "
    )


def test_summary_line_names_what_ran_and_what_did_not() -> None:
    """The run's last line says which databases it proved, and on which SQLAlchemy."""
    import sqlalchemy

    on = f" (SQLAlchemy {sqlalchemy.__version__})"
    assert "backends: sqlite ran; postgresql, mariadb not configured" + on == summary_line(["sqlite"], ["sqlite"], [])
    assert "backends: sqlite ran; mariadb ran with failures; postgresql not configured" + on == summary_line(
        ["sqlite", "mariadb"], ["sqlite", "mariadb"], ["mariadb"]
    )


def _outputs(path: Path) -> list[tuple[int, str]]:
    """(line, expected output) of every doctest example that runs on SQLite."""
    return [
        (example.line, example.want)
        for example in page_model.read(path).examples
        if example.want and example.runs_on("sqlite", page_model.installed_series())
    ]


OUTPUTS = _outputs(EXEMPLAR)


def test_the_exemplar_has_outputs_to_check() -> None:
    """The mutation test below would pass vacuously on a page without outputs."""
    assert len(OUTPUTS) >= 10


@pytest.mark.parametrize(("line", "want"), OUTPUTS, ids=[f"line-{line}" for line, _ in OUTPUTS])
def test_changed_output_fails_naming_page_and_line(tmp_path: Path, line: int, want: str) -> None:
    """Changing any expected output on the exemplar page makes its test fail at that page and line."""
    lines = EXEMPLAR.read_text().splitlines(keepends=True)
    # The expected output starts on the first line at or after the example whose text begins it.
    first = want.splitlines()[0]
    at = next(i for i in range(line - 1, len(lines)) if lines[i].rstrip("\n") == first)
    lines[at] = "CHANGED " + lines[at]
    page = tmp_path / EXEMPLAR.name
    page.write_text("".join(lines))

    document = Document.parse(str(page), *page_parsers("sqlite"))
    backend = Backend("sqlite")
    _setup(backend)(document.namespace)
    failures = []
    try:
        for example in document.examples():
            try:
                example.evaluate()
            except SybilFailure as failure:
                failures.append(str(failure))
                break
            except (pytest.skip.Exception, unittest.SkipTest):
                continue  # another backend's tab, or a `% skip:` block
    finally:
        _teardown(document.namespace)
    assert 1 == len(failures)
    assert failures[0].startswith(f"Example at {page}, line {line}, column 1 did not evaluate as expected")


SERIES_PAGE = """\
# Series

```python
>>> import sqlalchemy
>>> series = ".".join(sqlalchemy.__version__.split(".")[:2])
```

::::{tab-set}
:sync-group: sqlalchemy

:::{tab-item} SQLAlchemy 2.1
:sync: sqlalchemy-2.1

```python
>>> series
'2.1'
```
:::

:::{tab-item} SQLAlchemy 2.0
:sync: sqlalchemy-2.0

```python
>>> series
'2.0'
```
:::
::::
"""


def _run_page(path: Path, api: str = "session") -> tuple[list[str], list[int]]:
    """Failures (Sybil's messages) and the lines of the examples skipped, for a page run on SQLite
    (in its Session tabs, or with ``api="async"`` its AsyncSession tabs)."""
    install_create_engine()
    document = Document.parse(str(path), *page_parsers("sqlite", api))
    _setup(Backend("sqlite"))(document.namespace)
    failures, skipped = [], []
    try:
        for example in document.examples():
            try:
                example.evaluate()
            except SybilFailure as failure:
                failures.append(str(failure))
            except (pytest.skip.Exception, unittest.SkipTest):
                skipped.append(example.line)
    finally:
        _teardown(document.namespace)
    return failures, skipped


@pytest.mark.parametrize("tab", ["2.1", "2.0"])
def test_changed_output_in_a_series_tab_fails_that_series_only(tmp_path: Path, tab: str) -> None:
    """An output changed inside one series' tab fails the run on that series, at its line, and
    leaves the other series' run green (CI runs this on both)."""
    page = tmp_path / "series.md"
    page.write_text(SERIES_PAGE.replace(f"'{tab}'\n", "'CHANGED'\n"))
    line = page.read_text().split("\n").index("'CHANGED'")  # the example is the line before
    failures, skipped = _run_page(page)
    if page_model.installed_series() == tab:
        assert 1 == len(failures)
        assert failures[0].startswith(f"Example at {page}, line {line}, column 1 did not evaluate as expected")
    else:
        assert [] == failures
        assert [line] == skipped


def test_each_series_runs_its_own_tab(tmp_path: Path) -> None:
    page = tmp_path / "series.md"
    page.write_text(SERIES_PAGE)
    failures, skipped = _run_page(page)
    assert [] == failures
    assert 1 == len(skipped)


ASYNC_PAGE = """\
# Awaiting

```python
>>> from sqlalchemy import text
>>> from sqlalchemy.ext.asyncio import create_async_engine
>>> engine = create_async_engine("sqlite+aiosqlite://")
>>> async with engine.connect() as conn:
...     print((await conn.execute(text("select 41 + 1"))).scalar())
42
>>> await engine.dispose()
>>> import asyncio
>>> await asyncio.sleep(0, "a value the prompt shows")
'a value the prompt shows'
>>> await asyncio.wait_for(asyncio.sleep(1), 0)
Traceback (most recent call last):
...
TimeoutError
```

```python
loop = asyncio.get_running_loop()
await asyncio.sleep(0)
```

```python
>>> asyncio.get_running_loop() is loop
True
```
"""


def test_top_level_await_runs_on_one_loop_per_page(tmp_path: Path) -> None:
    """Examples typed as into `python -m asyncio` run, their output and exceptions checked, on one
    event loop for the whole page."""
    page = tmp_path / "awaiting.md"
    page.write_text(ASYNC_PAGE)
    assert ([], []) == _run_page(page)


def test_a_changed_async_output_fails_naming_page_and_line(tmp_path: Path) -> None:
    page = tmp_path / "awaiting.md"
    page.write_text(ASYNC_PAGE.replace("42\n", "43\n"))
    failures, _ = _run_page(page)
    assert 1 == len(failures)
    assert failures[0].startswith(f"Example at {page}, line 7, column 1 did not evaluate as expected")
    assert "Expected:\n    43\nGot:\n    42\n" in failures[0]


def test_an_async_engine_is_pointed_at_the_pages_database() -> None:
    """On a server, `create_async_engine()` gets the page's scratch database with the async driver."""
    from sqlalchemy.engine import make_url

    from tests.harness import pages

    run = pages.PageRun(Backend("postgresql", make_url("postgresql+psycopg://postgres@127.0.0.1:5432/test")))
    run.url = make_url("postgresql+psycopg://postgres@127.0.0.1:5432/cookbook_1_1")
    pages._active = run
    try:
        engine = pages.create_async_engine("sqlite+aiosqlite://")
    finally:
        pages._active = None
    assert "postgresql+asyncpg://postgres@127.0.0.1:5432/cookbook_1_1" == engine.url.render_as_string()
    assert [engine] == run.async_engines


API_PAGE = """\
# Both APIs

```python
from sqlalchemy import text
```

::::{tab-set}
:sync-group: api

:::{tab-item} Session
:sync: session

```python
>>> import asyncio
>>> from sqlalchemy import create_engine
>>> from sqlalchemy.orm import Session
>>> session = Session(create_engine("sqlite://"))
>>> session.scalar(text("select 'session'"))
'session'
>>> try:
...     asyncio.get_running_loop()
... except RuntimeError:
...     print("no loop runs this tab")
no loop runs this tab
```
:::

:::{tab-item} AsyncSession
:sync: async-session

```python
>>> from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
>>> session = AsyncSession(create_async_engine("sqlite+aiosqlite://"))
>>> await session.scalar(text("select 'async'"))
'async'
```
:::
::::

```python
>>> type(session).__name__ in ("Session", "AsyncSession")
True
```
"""


@pytest.mark.parametrize("api", ["session", "async"])
def test_each_api_tab_runs_in_its_own_run(tmp_path: Path, api: str) -> None:
    """A page with Session and AsyncSession tabs runs once per API: each run runs its own tab and
    what the tabs share, and skips the other tab with the reason; the Session run has no loop."""
    page = tmp_path / "apis.md"
    page.write_text(API_PAGE)
    other_tab_line = (
        API_PAGE.split("\n").index(
            ">>> import asyncio"
            if api == "async"
            else ">>> from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine"
        )
        + 1
    )
    failures, skipped = _run_page(page, api)
    assert [] == failures
    assert other_tab_line in skipped


@pytest.mark.parametrize("api", ["session", "async"])
def test_a_changed_output_in_an_api_tab_fails_that_run_only(tmp_path: Path, api: str) -> None:
    page = tmp_path / "apis.md"
    page.write_text(API_PAGE.replace("'async'\n", "'changed'\n"))
    failures, _ = _run_page(page, api)
    if api == "async":
        assert 1 == len(failures)
        assert "Expected:\n    'changed'\nGot:\n    'async'\n" in failures[0]
    else:
        assert [] == failures


#: What the page below reads, set by the test before each run.
TENANT = "a"

LAMBDA_PAGE = """\
# A lambda that reads a global

```python
>>> from sqlalchemy import String, create_engine, select
>>> from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, with_loader_criteria
>>> from tests.harness import test_harness
>>> tenant = test_harness.TENANT
>>> class Base(DeclarativeBase):
...     pass
>>> class Row(Base):
...     __tablename__ = "row"
...     id: Mapped[int] = mapped_column(primary_key=True)
...     tenant: Mapped[str] = mapped_column(String(10))
>>> def mine(cls):
...     return cls.tenant == tenant
>>> engine = create_engine("sqlite://")
>>> Base.metadata.create_all(engine)
>>> with Session(engine) as session:
...     session.add_all([Row(tenant="a"), Row(tenant="b")])
...     only_mine = with_loader_criteria(Row, lambda cls: mine(cls))
...     print(session.scalars(select(Row.tenant).options(only_mine)).all())
['a']
```
"""


def test_a_lambda_sees_its_own_runs_globals(tmp_path: Path) -> None:
    """SQLAlchemy caches a lambda's analysis by code object; a page run again (on the next backend)
    must not get the previous run's globals from that cache."""
    global TENANT
    page = tmp_path / "lambda.md"
    page.write_text(LAMBDA_PAGE)
    TENANT = "a"
    assert ([], []) == _run_page(page)
    TENANT = "b"
    try:
        failures, _ = _run_page(page)
    finally:
        TENANT = "a"
    assert 1 == len(failures) and "Expected:\n    ['a']\nGot:\n    ['b']\n" in failures[0]


def test_a_page_runs_as_main(tmp_path: Path) -> None:
    """A page's code runs as a reader's script does, in `__main__`."""
    page = tmp_path / "main.md"
    page.write_text(
        "# Main\n\n```python\n>>> class Point:\n...     pass\n"
        ">>> Point.__module__, __name__\n('__main__', '__main__')\n```\n"
    )
    assert ([], []) == _run_page(page)


def test_engine_from_config_is_pointed_at_the_pages_database() -> None:
    """Flask-SQLAlchemy makes its engine with `engine_from_config()`: on a server, it gets the page's database."""
    from sqlalchemy import engine_from_config

    from tests.harness import pages

    pages.install_create_engine()
    run = pages.PageRun(Backend("postgresql", make_url("postgresql+psycopg://postgres@127.0.0.1:5432/test")))
    run.url = make_url("postgresql+psycopg://postgres@127.0.0.1:5432/cookbook_1_1")
    pages._active = run
    try:
        engine = engine_from_config({"url": "sqlite:///flask-session.db"}, prefix="")
    finally:
        pages._active = None
    assert "postgresql+psycopg://postgres@127.0.0.1:5432/cookbook_1_1" == engine.url.render_as_string()
    assert [engine] == run.engines
