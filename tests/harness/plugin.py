"""The pytest side of the backend harness: choose, check, count and report the backends.

``docs/conftest.py``, ``src/conftest.py`` and ``tests/conftest.py`` each call :func:`register`;
the first call wins, so a run of any subset of the tree gets the same behaviour.
"""

from __future__ import annotations

import gc
import logging
import re
import sys
from collections.abc import Generator
from typing import TextIO, cast

import pytest

from cookbook_site.page import installed_series
from tests.harness.backends import Backend, BackendError, selected_names, summary_line, write_record

NAME = "cookbook-backends"
#: One record per SQLAlchemy series (``_build/verified-2.1.json``): the site lists each series it finds.
RECORD = "_build/verified-{series}.json"
SUMMARY = "_build/backends.txt"


class StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stdout`` is at the time, so doctest captures the SQL log."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class BackendPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        try:
            names = selected_names()
            self.backends = [Backend.from_name(n) for n in names]
            for backend in self.backends:
                backend.check()
        except BackendError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.failed: set[str] = set()
        self.ran: set[str] = set()
        # page (docs-relative, no suffix) -> backend -> every example passed or was skipped
        self.pages: dict[str, dict[str, bool]] = {}
        # `echo=True` only adds its own (timestamped) handler when the logger has none:
        # this plain one makes the emitted SQL checkable doctest output.
        logger = logging.getLogger("sqlalchemy.engine.Engine")
        if not any(isinstance(h, StdoutHandler) for h in logger.handlers):
            logger.addHandler(StdoutHandler())

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.backends]

    def backend(self, name: str) -> Backend:
        return next(b for b in self.backends if b.name == name)

    _id = re.compile(r"sybil:([\w-]+),|\[(\w+)[\]-]")

    def _run_of(self, nodeid: str) -> str | None:
        """The run a test belongs to: a backend's name, or a page run such as ``sqlite-async``."""
        for match in self._id.finditer(nodeid):
            name = match.group(1) or match.group(2)
            if name.split("-")[0] in self.names:
                return name
        return None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # What exists now (modules, thousands of collected items) lives for the whole run: frozen,
        # the garbage collector no longer walks it on every full collection (an async page ends
        # with one, to find its leftover connections), which cost seconds per run.
        gc.collect()
        gc.freeze()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        # Sybil's own `% skip:` raises unittest.SkipTest; report it at the page's line, not pytest's.
        example = getattr(item, "example", None)
        if example is not None and report.skipped and isinstance(report.longrepr, tuple):
            report.longrepr = (str(item.path), example.line, report.longrepr[2])
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        run = self._run_of(report.nodeid)
        if run is None:
            return
        name = run.split("-")[0]
        if report.when == "call" or report.failed:
            self.ran.add(name)
        if report.failed:
            self.failed.add(name)
        path = report.nodeid.split("::")[0]
        if path.startswith("docs/") and path.endswith(".md") and (report.when == "call" or report.failed):
            # Keyed by run: a page with AsyncSession tabs has "sqlite" and "sqlite-async".
            results = self.pages.setdefault(path.removeprefix("docs/").removesuffix(".md"), {})
            results[run] = results.get(run, True) and not report.failed

    def line(self) -> str:
        ran = [n for n in self.names if n in self.ran]
        return summary_line(self.names, ran, sorted(self.failed, key=self.names.index))

    def covers_every_page(self) -> bool:
        """Whether this run's arguments include the whole docs/ folder (a plain `pytest` does)."""
        docs = self.config.rootpath / "docs"
        here = self.config.invocation_params.dir
        scope = [(here / arg.split("::")[0]).resolve() for arg in self.config.args]
        return any(docs == path or docs.is_relative_to(path) for path in scope)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(self.config, "workerinput"):
            return  # a pytest-xdist worker: the controller sees every report and writes the record
        ran = [b for b in self.backends if b.name in self.ran]
        root = self.config.rootpath
        # Only a run of every page may tell the landing page what the examples were verified on.
        if self.covers_every_page():
            path = root / RECORD.format(series=installed_series())
            write_record(path, ran, sorted(self.failed), self.pages)
        (root / SUMMARY).parent.mkdir(parents=True, exist_ok=True)
        (root / SUMMARY).write_text(self.line() + "\n")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # After pytest's own closing line, so the run ends on which databases it proved.
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(self.line())


def register(config: pytest.Config) -> BackendPlugin:
    plugin = config.pluginmanager.get_plugin(NAME)
    if plugin is None:
        plugin = BackendPlugin(config)
        config.pluginmanager.register(plugin, NAME)
    return cast(BackendPlugin, plugin)
