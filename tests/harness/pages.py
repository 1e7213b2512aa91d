"""How the pages run: Sybil, once per backend, each page in a database of its own.

What the reader sees stays plain SQLite code.  While a page's example runs, the harness
points every ``create_engine()`` the page makes at the page's own scratch database on the
backend under test, and runs the example in the page's own temporary directory (so a
``sqlite:///relative.db`` file lands there and is removed with it).

An example written as a reader types it into ``python -m asyncio`` (top-level ``await``,
``async with``, ``async for``) is compiled with top-level await allowed and run on one event loop
kept for the whole page (plain doctest cannot run it: CPython issue #81187); its output is
compared as any other.  ``create_async_engine()`` is pointed at the page's database like
``create_engine()``, with the backend's async driver.  A page with Session and AsyncSession tabs
runs twice, once for each.

What runs is the page model's decision (:mod:`cookbook_site.page`, the reading the downloads and
Run use too): blocks inside a backend tab (a sphinx-design ``tab-item`` with ``:sync:
postgresql``) run on that backend only, and a ``% skip:`` line skips what follows it; either is
reported as skipped, with the reason, at the page's line.  Sybil parses and evaluates the rest.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import doctest
import gc
import inspect
import io
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy
import sqlalchemy.engine
import sqlalchemy.engine.create
import sqlalchemy.ext.asyncio
import sqlalchemy.ext.asyncio.engine
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import close_all_sessions as close_all_async_sessions
from sqlalchemy.orm import close_all_sessions
from sqlalchemy.sql import lambdas
from sybil import Document, Example, Region, Sybil
from sybil.document import PythonDocStringDocument
from sybil.integration import pytest as sybil_pytest
from sybil.integration.pytest import pytest_integration
from sybil.parsers import rest

from cookbook_site import page as page_model
from tests.harness.backends import Backend
from tests.harness.loops import no_running_loop
from tests.harness.plugin import BackendPlugin, register

DOCTEST_FLAGS = page_model.DOCTEST_FLAGS
RUN_KEY = "__cookbook_run__"

T = TypeVar("T")

_real_create_engine = sqlalchemy.create_engine
_real_create_async_engine = sqlalchemy.ext.asyncio.create_async_engine


#: The async driver each backend's examples use, in place of its sync one.
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "mariadb": "mariadb+aiomysql"}


@dataclass
class PageRun:
    """One page on one backend: its scratch database, working directory, engines and event loop."""

    backend: Backend
    stack: ExitStack = field(default_factory=ExitStack)
    url: URL | None = None
    cwd: str = ""
    engines: list[Engine] = field(default_factory=list)
    async_engines: list[Any] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    begun: bool = False
    collecting: bool = False

    def begin(self) -> None:
        """Before the run's first example (Sybil sets up every run of a page before any runs)."""
        self.begun = True
        # SQLAlchemy caches its analysis of lambdas (``with_loader_criteria(..., lambda cls: ...)``)
        # by code object, and a page's code compiled again in a later run compares equal: a lambda
        # would see the globals of the page's run before.  A reader's script starts with empty caches.
        lambdas.AnalyzedCode._fns.clear()
        lambdas._closure_per_cache_key.clear()

    def start(self) -> None:
        self.cwd = tempfile.mkdtemp(prefix="cookbook-page-")
        if self.backend.server_url is not None:
            self.url = self.stack.enter_context(self.backend.database())

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The page's one event loop, made when its first asynchronous example runs.

        While it exists, Python's automatic garbage collection waits: each MissingGreenlet leaves
        SQLAlchemy's never-awaited coroutine in a reference cycle, and Python's warning about it,
        whenever a collection finds it, would fail whichever example happened to be running.
        The page's leftovers are collected when it ends (:meth:`_collect_leftovers`).
        """
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            self.collecting = gc.isenabled()
            gc.disable()
        return self.loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the page's loop until it is done (with no other loop running)."""
        loop = self.event_loop()
        with no_running_loop():
            return loop.run_until_complete(coroutine)

    def finish(self) -> None:
        # Closing every session returns its connection to its pool; a full gc.collect() here
        # would cost ~50 ms a page, and the servers' DROP DATABASE ends any straggler anyway.
        # An AsyncSession a failed example left open is closed on the page's loop first: the
        # synchronous close_all_sessions() would need the greenlet it no longer has.
        if self.loop is not None:
            self.run(close_all_async_sessions())
        close_all_sessions()
        for engine in self.engines:
            engine.dispose()
        try:
            if self.loop is not None:
                for async_engine in self.async_engines:
                    self.run(async_engine.dispose())
                self.run(self.loop.shutdown_asyncgens())
                self.loop.close()
                self._collect_leftovers()
            self.stack.close()
        finally:
            shutil.rmtree(self.cwd, ignore_errors=True)

    def _collect_leftovers(self) -> None:
        """Collect what an asynchronous page left in reference cycles before the next page runs.

        Each MissingGreenlet leaves a coroutine that was never awaited (SQLAlchemy's, not the
        page's); collected later, during another page's example, Python's warning about it would
        fail that example.  A reader's script prints such warnings at exit, or not at all.
        """
        hook = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: None
        try:
            gc.collect()
        finally:
            sys.unraisablehook = hook
            if self.collecting:
                gc.enable()


_active: PageRun | None = None


def create_engine(url: Any, **kwargs: Any) -> Engine:
    """``sqlalchemy.create_engine`` as the pages see it while the harness runs them."""
    run = _active
    if run is None:
        return _real_create_engine(url, **kwargs)
    if run.url is not None:
        url = run.url
    engine = _real_create_engine(url, **kwargs)
    run.engines.append(engine)
    return engine


def create_async_engine(url: Any, **kwargs: Any) -> Any:
    """``sqlalchemy.ext.asyncio.create_async_engine`` as the pages see it while the harness runs them."""
    run = _active
    if run is None:
        return _real_create_async_engine(url, **kwargs)
    if run.url is not None:
        url = run.url.set(drivername=ASYNC_DRIVERS[run.backend.name])
    engine = _real_create_async_engine(url, **kwargs)
    run.async_engines.append(engine)
    return engine


def _readable_failures() -> None:
    """Sybil's pytest item trims a failure's traceback to the example's frames, and raises
    IndexError (an INTERNALERROR that hides the failure and stops an xdist worker) when the
    exception did not come from the example: a warning pytest raises after it, say an unclosed
    connection the garbage collector found.  Such a failure is reported with its whole traceback."""
    item = sybil_pytest.SybilItem
    trim = item._traceback_filter
    if getattr(trim, "cookbook", False):
        return

    def traceback_filter(self: Any, excinfo: Any) -> Any:
        try:
            return trim(self, excinfo)
        except IndexError:
            return excinfo.traceback

    traceback_filter.cookbook = True  # type: ignore[attr-defined]
    item._traceback_filter = traceback_filter  # type: ignore[method-assign]


def install_create_engine() -> None:
    _readable_failures()
    sqlalchemy.create_engine = create_engine
    sqlalchemy.engine.create_engine = create_engine
    # engine_from_config() (Flask-SQLAlchemy makes its engine with it) calls the module's own name.
    sqlalchemy.engine.create.create_engine = create_engine
    sqlalchemy.ext.asyncio.create_async_engine = create_async_engine
    sqlalchemy.ext.asyncio.engine.create_async_engine = create_async_engine


class Awaiting:
    """Runs an example that uses top-level ``await`` as ``python -m asyncio`` would, on the page's loop.

    A ``>>>`` example is compiled in ``"single"`` mode, so a bare expression shows its value; its
    output, or the last line of the exception it raised, is compared with the page by Sybil's
    checker, as doctest compares any other example.
    """

    def __call__(self, example: Example) -> str | None:
        run: PageRun = example.namespace[RUN_KEY]
        return run.run(self.evaluate(example))

    async def evaluate(self, example: Example) -> str | None:
        parsed = example.parsed
        doctest_example = isinstance(parsed, doctest.Example)
        source = parsed.source if doctest_example else str(parsed)
        mode = "single" if doctest_example else "exec"
        # The page's lines: a traceback names the page and the line the reader sees.
        code = compile(
            "\n" * (example.line - 1 + (0 if doctest_example else 1)) + source,
            example.path,
            mode,
            ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            dont_inherit=True,
        )
        out = io.StringIO()
        raised: BaseException | None = None
        with contextlib.redirect_stdout(out):
            try:
                result = eval(code, example.namespace)
                if inspect.iscoroutine(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - compared with what the page shows, as doctest does
                raised = exc
        if not doctest_example:
            if raised is not None:
                raise raised
            return None
        want, exc_msg = parsed.want, parsed.exc_msg
        flags = page_model.read(example.path, example.document.text).at(example.region.start).flags
        if raised is None:
            if exc_msg is None and page_model.output_matches(want, out.getvalue(), flags):
                return None
            return f"Expected:\n{_indent(want)}Got:\n{_indent(out.getvalue())}"
        got = traceback.format_exception_only(type(raised), raised)[-1]
        if exc_msg is not None and page_model.output_matches(exc_msg, got, flags):
            return None
        return f"Expected:\n{_indent(exc_msg or want)}Got exception:\n{_indent(got)}"


class InLoop:
    """Runs a plain example of an asynchronous page inside the page's running loop, as
    ``python -m asyncio`` runs every statement (``asyncio.get_running_loop()`` works there)."""

    def __init__(self, inner: Callable[[Example], Any]) -> None:
        self.inner = inner

    def __call__(self, example: Example) -> Any:
        run: PageRun = example.namespace[RUN_KEY]

        async def in_loop() -> Any:
            return self.inner(example)

        return run.run(in_loop())


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines()) or "    nothing\n"


class Active:
    """Wraps an example's evaluator: the page's backend and directory are in force while it runs."""

    def __init__(self, inner: Callable[[Example], Any] | None) -> None:
        if inner is None:
            raise ValueError("a region without an evaluator: nothing to run")
        self.inner = inner

    def __call__(self, example: Example) -> Any:
        global _active
        run: PageRun = example.namespace[RUN_KEY]
        if not run.begun:
            run.begin()
        before = os.getcwd()
        _active = run
        os.chdir(run.cwd)
        try:
            with no_running_loop():
                return self.inner(example)
        finally:
            os.chdir(before)
            _active = None


class Skipped:
    """The evaluator of an example that does not run on this backend (another tab, or a skip)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, example: Example) -> None:
        # Reported at the page and line of the example, not at this file.
        raise pytest.skip.Exception(self.reason, _use_item_location=True)


class PageModelParser:
    """Sybil's regions for a page's examples, run or skipped as the page model says for ``backend``
    (and ``api``: the page's Session tabs, or its AsyncSession tabs)."""

    def __init__(self, backend: str, api: str = "session") -> None:
        self.backend = backend
        self.api = api
        self.series = page_model.installed_series()

    def __call__(self, document: Document) -> Iterator[Region]:
        try:
            page = page_model.read(document.path, document.text)
        except page_model.PageError as exc:
            raise ValueError(str(exc)) from None
        # A run awaits (and runs every example in the page's loop) only if an example it runs awaits:
        # a page's Session tabs run as in plain `python`, its AsyncSession tabs as in `python -m asyncio`.
        asynchronous = any(
            example.awaits for example in page.examples if example.runs_on(self.backend, self.series, self.api)
        )
        for parser in page_model.parsers():
            for region in parser(document):
                example = page.at(region.start)
                reason = example.skip_reason(self.backend, self.series, self.api)
                if reason is not None:
                    region.evaluator = Skipped(reason)
                elif example.awaits:
                    region.evaluator = Active(Awaiting())
                elif asynchronous and region.evaluator is not None:
                    region.evaluator = Active(InLoop(region.evaluator))
                else:
                    region.evaluator = Active(region.evaluator)
                yield region


class Everywhere:
    """Runs a Sybil parser's regions with the page's backend in force (docstrings have no tabs)."""

    def __init__(self, parser: Callable[[Document], Iterable[Region]]) -> None:
        self.parser = parser

    def __call__(self, document: Document) -> Iterator[Region]:
        for region in self.parser(document):
            region.evaluator = Active(region.evaluator)
            yield region


def _setup(backend: Backend) -> Callable[[dict[str, Any]], None]:
    def setup(namespace: dict[str, Any]) -> None:
        run = PageRun(backend)
        run.start()
        namespace[RUN_KEY] = run
        # As in a reader's script or prompt: a class the page defines belongs to `__main__`, not
        # to `builtins` (Pydantic, for one, will not read attributes from objects of builtins' classes).
        namespace["__name__"] = "__main__"

    return setup


def _teardown(namespace: dict[str, Any]) -> None:
    run: PageRun | None = namespace.get(RUN_KEY)
    namespace.clear()
    if run is not None:
        run.finish()


def page_parsers(backend: str, api: str = "session") -> list[Callable[[Document], Iterable[Region]]]:
    return [PageModelParser(backend, api)]


def docstring_parsers(backend: str) -> list[Callable[[Document], Iterable[Region]]]:
    return [
        Everywhere(rest.DocTestParser(optionflags=DOCTEST_FLAGS)),
        Everywhere(rest.PythonCodeBlockParser()),
        rest.SkipParser(),
    ]


def sybils(plugin: BackendPlugin, path: str, kind: str) -> list[Sybil]:
    """One Sybil per backend under test, named after it (it shows in each test's id)."""
    install_create_engine()
    made = []
    # Pages with Session and AsyncSession tabs run a second time, for their AsyncSession tabs.
    with_api_tabs = (
        sorted(p.name for p in page_model.pages(Path(path)) if page_model.has_api_tabs(p.read_text(encoding="utf-8")))
        if kind == "pages"
        else []
    )
    for backend in plugin.backends:
        if kind == "pages":
            made.append(
                Sybil(
                    parsers=page_parsers(backend.name),
                    path=path,
                    patterns=["*.md"],
                    excludes=["_*"],
                    setup=_setup(backend),
                    teardown=_teardown,
                    name=backend.name,
                )
            )
            if with_api_tabs:
                made.append(
                    Sybil(
                        parsers=page_parsers(backend.name, "async"),
                        path=path,
                        filenames=with_api_tabs,
                        excludes=["_*"],
                        setup=_setup(backend),
                        teardown=_teardown,
                        name=page_model.run_name(backend.name, "async"),
                    )
                )
        else:
            made.append(
                Sybil(
                    parsers=docstring_parsers(backend.name),
                    path=path,
                    patterns=["*.py"],
                    excludes=["conftest.py"],
                    document_types={".py": PythonDocStringDocument},
                    setup=_setup(backend),
                    teardown=_teardown,
                    name=backend.name,
                )
            )
    return made


def conftest_hooks(path: str, kind: str) -> tuple[Callable[..., None], Callable[..., Any]]:
    """``pytest_configure`` and ``pytest_collect_file`` for a conftest that runs the files under `path`."""
    collectors: dict[Any, Callable[..., Any]] = {}

    def pytest_configure(config: pytest.Config) -> None:
        register(config)

    def pytest_collect_file(file_path: Any, parent: Any) -> Any:
        config = parent.config
        if config not in collectors:
            collectors[config] = pytest_integration(*sybils(register(config), path, kind))
        return collectors[config](file_path, parent)

    return pytest_configure, pytest_collect_file
