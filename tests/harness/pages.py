"""How the pages run: Sybil, once per backend, each page in a database of its own.

What the reader sees stays plain SQLite code.  While a page's example runs, the harness
points every ``create_engine()`` the page makes at the page's own scratch database on the
backend under test, and runs the example in the page's own temporary directory (so a
``sqlite:///relative.db`` file lands there and is removed with it).

What runs is the page model's decision (:mod:`cookbook_site.page`, the reading the downloads and
Run use too): blocks inside a backend tab (a sphinx-design ``tab-item`` with ``:sync:
postgresql``) run on that backend only, and a ``% skip:`` line skips what follows it; either is
reported as skipped, with the reason, at the page's line.  Sybil parses and evaluates the rest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy
import sqlalchemy.engine
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import close_all_sessions
from sybil import Document, Example, Region, Sybil
from sybil.document import PythonDocStringDocument
from sybil.integration.pytest import pytest_integration
from sybil.parsers import rest

from cookbook_site import page as page_model
from tests.harness.backends import Backend
from tests.harness.plugin import BackendPlugin, register

DOCTEST_FLAGS = page_model.DOCTEST_FLAGS
RUN_KEY = "__cookbook_run__"

_real_create_engine = sqlalchemy.create_engine


@dataclass
class PageRun:
    """One page on one backend: its scratch database, working directory and engines."""

    backend: Backend
    stack: ExitStack = field(default_factory=ExitStack)
    url: URL | None = None
    cwd: str = ""
    engines: list[Engine] = field(default_factory=list)

    def start(self) -> None:
        self.cwd = tempfile.mkdtemp(prefix="cookbook-page-")
        if self.backend.server_url is not None:
            self.url = self.stack.enter_context(self.backend.database())

    def finish(self) -> None:
        # Closing every session returns its connection to its pool; a full gc.collect() here
        # would cost ~50 ms a page, and the servers' DROP DATABASE ends any straggler anyway.
        close_all_sessions()
        for engine in self.engines:
            engine.dispose()
        try:
            self.stack.close()
        finally:
            shutil.rmtree(self.cwd, ignore_errors=True)


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


def install_create_engine() -> None:
    sqlalchemy.create_engine = create_engine
    sqlalchemy.engine.create_engine = create_engine


class Active:
    """Wraps an example's evaluator: the page's backend and directory are in force while it runs."""

    def __init__(self, inner: Callable[[Example], Any] | None) -> None:
        if inner is None:
            raise ValueError("a region without an evaluator: nothing to run")
        self.inner = inner

    def __call__(self, example: Example) -> Any:
        global _active
        run: PageRun = example.namespace[RUN_KEY]
        before = os.getcwd()
        _active = run
        os.chdir(run.cwd)
        try:
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
    """Sybil's regions for a page's examples, run or skipped as the page model says for ``backend``."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.series = page_model.installed_series()

    def __call__(self, document: Document) -> Iterator[Region]:
        try:
            page = page_model.read(document.path, document.text)
        except page_model.PageError as exc:
            raise ValueError(str(exc)) from None
        for parser in page_model.parsers():
            for region in parser(document):
                reason = page.at(region.start).skip_reason(self.backend, self.series)
                region.evaluator = Skipped(reason) if reason is not None else Active(region.evaluator)
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

    return setup


def _teardown(namespace: dict[str, Any]) -> None:
    run: PageRun | None = namespace.get(RUN_KEY)
    namespace.clear()
    if run is not None:
        run.finish()


def page_parsers(backend: str) -> list[Callable[[Document], Iterable[Region]]]:
    return [PageModelParser(backend)]


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
