"""The model of a page: the one reading of a page that the tests, downloads, Run and bench share.

A page is read once, with Sybil's own MyST parsers (the ones the test harness runs it with), into
its :class:`Example` objects, in page order.  Each example knows

- where it is (its line, and the block it belongs to),
- what it runs and what it expects (doctest's ``want`` and ``exc_msg``, and its option flags),
- which tabs it belongs to (:attr:`Example.backend`: a ``tab-item`` whose ``:sync:`` names a
  database; :attr:`Example.series`: one whose ``:sync:`` names a SQLAlchemy series), and
- whether, and why, the tests skip it (a ``% skip:`` line or ``# doctest: +SKIP``).

The Sybil harness (``tests/harness/pages.py``) asks :meth:`Example.runs_on` what to run and
:meth:`Example.skip_reason` what to report; the downloads, Run in the browser, the paste test and
the bench read the same examples.  One comparison, Sybil's doctest
:class:`~sybil.evaluators.doctest.OutputChecker`, decides whether an output is what the page shows
(:func:`output_matches`); the browser runs the same class, shipped to it as Sybil's wheel.

Which pages are recipes is decided here too (:func:`is_recipe`, :func:`recipe_pages`).

A page shows a difference between databases in sphinx-design tabs written with colon fences;
a ``tab-item`` whose ``:sync:`` names a backend holds that backend's blocks::

    ::::{tab-set}
    :sync-group: backend

    :::{tab-item} PostgreSQL
    :sync: postgresql
    ...
    :::
    ::::

A difference between SQLAlchemy's series is shown the same way, in a tab-set of the
``sqlalchemy`` group whose tabs sync ``sqlalchemy-2.0`` and ``sqlalchemy-2.1``; its blocks run on
that series only.  The two kinds nest either way round.
"""

from __future__ import annotations

import ast
import doctest
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import cast

from sybil import Document
from sybil.evaluators.doctest import OutputChecker
from sybil.parsers import myst

#: The databases a page can run on, in the order the site shows them.
BACKENDS = ("sqlite", "postgresql", "mariadb")
#: How the site names each database.
BACKEND_LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}
#: The database a page runs on when nothing else is asked for (downloads and Run use it).
DEFAULT_BACKEND = "sqlite"

#: The SQLAlchemy series the pages are verified on, oldest first.
SERIES = ("2.0", "2.1")
#: The series whose release ``requirements.txt`` pins: the site's build, downloads and Run use it.
DEFAULT_SERIES = "2.1"

#: The two ways a page's code can talk to the database: ``Session`` and ``AsyncSession``.
APIS = ("session", "async")
#: How the site names each.
API_LABELS = {"session": "Session", "async": "AsyncSession"}

#: Each kind of tab: its ``:sync-group:``, and the ``:sync:`` value of each of its tabs.
TAB_GROUPS = {
    "backend": {name: name for name in BACKENDS},
    "sqlalchemy": {f"sqlalchemy-{series}": series for series in SERIES},
    "api": {"session": "session", "async-session": "async"},
}


def installed_series() -> str:
    """The series of the SQLAlchemy installed here (``"2.1"`` for 2.1.9), read without importing it."""
    major, minor = version("SQLAlchemy").split(".")[:2]
    return f"{major}.{minor}"


#: The folders (under ``docs/``) whose pages are recipes: a question answered with code.
RECIPE_FOLDERS = ("transactions", "querying", "relationships", "applications")

#: The doctest option flags every example runs with.
DOCTEST_FLAGS = doctest.ELLIPSIS


# --- Which pages ------------------------------------------------------------------------------


def is_page(docs: Path, path: Path) -> bool:
    """Whether a Markdown file under ``docs`` is a page of the site (nothing under a ``_`` folder)."""
    return path.suffix == ".md" and not any(part.startswith("_") for part in path.relative_to(docs).parts)


def is_recipe(docname: str) -> bool:
    """Whether the page ``docname`` (``transactions/delete-reinsert``) is a recipe page."""
    return docname.split("/", 1)[0] in RECIPE_FOLDERS and not any(part.startswith("_") for part in docname.split("/"))


def pages(docs: Path) -> list[Path]:
    """Every page's Markdown source under ``docs``, in order."""
    return sorted(p for p in docs.rglob("*.md") if is_page(docs, p))


def recipe_pages(docs: Path) -> list[Path]:
    """Every recipe page's Markdown source under ``docs``, in order."""
    return [p for p in pages(docs) if is_recipe(p.relative_to(docs).with_suffix("").as_posix())]


# --- Tabs -------------------------------------------------------------------------------------

_TAB_OPEN = re.compile(r"^(?P<fence>:{3,})\{tab-item\}[^\n]*\n(?P<options>(?:[ \t]*:[\w-]+:[^\n]*\n)*)", re.M)
_TABSET_OPEN = re.compile(r"^(?P<fence>:{3,})\{tab-set\}[^\n]*\n(?P<options>(?:[ \t]*:[\w-]+:[^\n]*\n)*)", re.M)
_SYNC = re.compile(r":sync:[ \t]*(\S+)")
_GROUP = re.compile(r":sync-group:[ \t]*(\S+)")


class PageError(ValueError):
    """A page that cannot be read as the tests would run it; the message names the page and line."""


def _closing(text: str, opening: re.Match[str]) -> int:
    fence = opening.group("fence")
    found = re.compile(rf"^{fence}[ \t]*$", re.M).search(text, opening.end())
    return found.end() if found else len(text)


def tabs(text: str, path: str = "<page>") -> list[tuple[int, int, str, str]]:
    """(start, end, group, value) of every backend or series tab on a page.

    Any other tab in a tab-set of one of :data:`TAB_GROUPS` is an error naming the page and line,
    so a misspelt ``:sync:`` cannot make a block run everywhere.
    """
    sets = [
        (m.start(), _closing(text, m), found.group(1))
        for m in _TABSET_OPEN.finditer(text)
        if (found := _GROUP.search(m.group("options"))) and found.group(1) in TAB_GROUPS
    ]
    spans: list[tuple[int, int, str, str]] = []
    for m in _TAB_OPEN.finditer(text):
        sync = _SYNC.search(m.group("options"))
        name = sync.group(1) if sync else None
        kind = next((g for g, values in TAB_GROUPS.items() if name in values), None)
        if kind is not None and name is not None:
            spans.append((m.start(), _closing(text, m), kind, TAB_GROUPS[kind][name]))
            continue
        inside = [g for s, e, g in sets if s <= m.start() < e]
        if inside:
            line = text.count("\n", 0, m.start()) + 1
            raise PageError(
                f"{path}, line {line}: a tab in a {inside[-1]} tab-set needs ':sync:' set to one of "
                f"{', '.join(TAB_GROUPS[inside[-1]])}; found {name!r}"
            )
    return spans


# --- Examples ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One example of a page, in page order: what the harness runs and what it checks.

    A fenced block that does not start with ``>>>`` is one ``code`` example; a doctest block
    gives one ``doctest`` example per ``>>>`` prompt.
    """

    #: Offset of the example in the page's text (where Sybil's region for it starts).
    start: int
    #: 1-based line of the example in the page's source.
    line: int
    #: ``"code"`` (run, output not checked) or ``"doctest"`` (output checked).
    kind: str
    #: The code, without prompts.
    source: str
    #: For a doctest, the output the page shows (doctest's ``want``).
    want: str
    #: For a doctest that shows an exception, its last line(s) (doctest's ``exc_msg``).
    exc_msg: str | None
    #: For a doctest, the option flags its ``# doctest:`` comment turns on or off, by name.
    options: tuple[tuple[str, bool], ...]
    #: Index of the block (fence or hidden block) the example belongs to, in page order.
    block: int
    #: 1-based line where that block starts (its opening fence).
    block_line: int
    #: False for a hidden ``% invisible-code-block``.
    visible: bool
    #: The backend whose tab holds the example, or None outside backend tabs.
    backend: str | None
    #: Why the tests skip the example (a ``% skip:`` line or ``# doctest: +SKIP``), or None.
    skip: str | None
    #: The SQLAlchemy series whose tab holds the example, or None outside series tabs.
    series: str | None = None
    #: ``"session"`` or ``"async"`` for an example in a Session or AsyncSession tab, else None.
    api: str | None = None

    def runs_on(self, backend: str, series: str = DEFAULT_SERIES, api: str = "session") -> bool:
        """Whether the harness runs this example when it runs the page on ``backend``, ``series``
        and ``api`` (the page's Session tabs, or its AsyncSession tabs)."""
        return self.skip_reason(backend, series, api) is None

    def skip_reason(self, backend: str, series: str = DEFAULT_SERIES, api: str = "session") -> str | None:
        """Why this example does not run on ``backend``, ``series`` and ``api`` (as the test report
        says it), or None."""
        if self.skip is not None:
            return self.skip
        if self.backend not in (None, backend):
            return f"{self.backend} tab: runs on {self.backend} only (this run: {backend})"
        if self.series not in (None, series):
            return f"SQLAlchemy {self.series} tab: runs on SQLAlchemy {self.series} only (this run: {series})"
        if self.api not in (None, api):
            return f"{API_LABELS[self.api]} tab: runs in the page's {API_LABELS[self.api]} run only"
        return None

    @property
    def awaits(self) -> bool:
        """Whether the example uses ``await``, ``async with`` or ``async for`` at the top level, as a
        reader types it into ``python -m asyncio`` (plain doctest cannot run it)."""
        return needs_await(self.source, "single" if self.kind == "doctest" else "exec")

    @property
    def flags(self) -> int:
        """The doctest option flags this example is compared with."""
        flags = DOCTEST_FLAGS
        for name, on in self.options:
            flag = doctest.OPTIONFLAGS_BY_NAME[name]
            flags = flags | flag if on else flags & ~flag
        return flags

    def matches(self, got: str) -> bool:
        """Whether ``got`` is what the page shows for this example (Sybil's comparison)."""
        return output_matches(self.want, got, self.flags)


@dataclass(frozen=True)
class Page:
    """A page's examples, in order, as the tests run them."""

    path: str
    text: str
    examples: tuple[Example, ...]

    def at(self, start: int) -> Example:
        """The example whose Sybil region starts at ``start``."""
        found = _by_start(self).get(start)
        if found is None:
            line = self.text.count("\n", 0, start) + 1
            raise PageError(f"{self.path}, line {line}: Sybil found an example the page model does not know")
        return found

    def blocks(self) -> dict[int, list[Example]]:
        """The examples grouped by the block they belong to, in page order."""
        grouped: dict[int, list[Example]] = {}
        for example in self.examples:
            grouped.setdefault(example.block, []).append(example)
        return grouped


@cache
def _by_start(page: Page) -> dict[int, Example]:
    return {example.start: example for example in page.examples}


def _skip_reason(raw: str | None) -> str:
    """The text of a ``% skip:`` reason (a Python expression, usually a string literal)."""
    if not raw:
        return "skipped"
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        return raw.strip()
    return str(value)


def parsers() -> list[myst.PythonCodeBlockParser]:
    """The Sybil parser that finds a page's examples (the harness evaluates what it yields)."""
    return [myst.PythonCodeBlockParser(doctest_optionflags=DOCTEST_FLAGS)]


def read(path: str | Path, text: str | None = None) -> Page:
    """A page's examples, in order (see :func:`_read`); a page already read is not read again."""
    path = str(path)
    if text is None:
        text = Path(path).read_text(encoding="utf-8")
    return _read(path, text)


@lru_cache(maxsize=64)
def _read(path: str, text: str) -> Page:
    """A page's examples, in order, found with the Sybil parsers the harness uses.

    A ``% skip: next`` skips the one example that follows (one ``>>>`` prompt, not a whole
    block), as Sybil's own skipper does; ``start`` ... ``end`` skips everything between.
    A conditional skip (``next if(...)``) is refused: what runs must not depend on the machine.
    """
    document = Document(text, path)
    python = parsers()[0]
    spans = tabs(text, path)

    def line_of(position: int) -> int:
        return text.count("\n", 0, position) + 1

    def owner(position: int, group: str) -> str | None:
        return next((value for s, e, g, value in spans if g == group and s <= position < e), None)

    found: list[tuple[int, Example | tuple[str, str | None]]] = []
    blocks = sorted(python.codeblock_parser(document), key=lambda r: r.start)
    for index, block in enumerate(blocks):
        lexeme = block.parsed  # a sybil Lexeme: the block's source, knowing where it starts
        source = str(lexeme)
        # A fenced block is shown; a `% invisible-code-block` (a comment) is not.
        visible = text[block.start :].lstrip()[:1] in ("`", "~")
        backend, series = owner(block.start, "backend"), owner(block.start, "sqlalchemy")
        api = owner(block.start, "api")
        if not source.startswith(">>>"):
            start = line_of(block.start)
            example = Example(
                block.start, start, "code", source, "", None, (), index, start, visible, backend, None, series, api
            )
            found.append((block.start, example))
            continue
        for region in python.doctest_parser(source, path):
            region.adjust(block, lexeme)
            parsed: doctest.Example = region.parsed
            skip = "doctest: +SKIP" if parsed.options.get(doctest.SKIP) else None
            names = {flag: name for name, flag in doctest.OPTIONFLAGS_BY_NAME.items()}
            options = tuple(sorted((names[flag], on) for flag, on in parsed.options.items()))
            example = Example(
                region.start,
                line_of(region.start),
                "doctest",
                parsed.source,
                parsed.want,
                parsed.exc_msg,
                options,
                index,
                line_of(block.start),
                visible,
                backend,
                skip,
                series,
                api,
            )
            found.append((region.start, example))
    for region in myst.SkipParser()(document):
        action, condition = cast(tuple[str, str | None], region.parsed)
        if condition and action == "next" and condition.lstrip().startswith("if"):
            raise PageError(f"{path}, line {line_of(region.start)}: a conditional skip is not supported; give a reason")
        found.append((region.start, (action, condition)))
    found.sort(key=lambda item: item[0])

    examples: list[Example] = []
    skip_next: str | None = None
    skip_all: str | None = None
    for _, item in found:
        if isinstance(item, tuple):
            action, reason = item
            if action == "next":
                skip_next = _skip_reason(reason)
            elif action == "start":
                skip_all = _skip_reason(reason)
            else:
                skip_all = None
            continue
        reason = skip_next or skip_all or item.skip
        skip_next = None
        examples.append(Example(**{**item.__dict__, "skip": reason}))
    return Page(path, text, tuple(examples))


def needs_await(source: str, mode: str = "exec") -> bool:
    """Whether ``source`` compiles only with top-level ``await`` allowed."""
    try:
        compile(source, "<example>", mode, dont_inherit=True)
    except SyntaxError:
        try:
            compile(source, "<example>", mode, ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        except SyntaxError:
            return False
        return True
    return False


def has_api_tabs(text: str) -> bool:
    """Whether a page shows Session and AsyncSession tabs (the harness then runs it once for each)."""
    return any(group == "api" for _, _, group, _ in tabs(text))


def apis_of(page: Page) -> tuple[str, ...]:
    """The APIs a page's examples use, of :data:`APIS`: both for a page with Session and AsyncSession
    tabs, ``("async",)`` for a page whose examples await and have no such tabs, else ``("session",)``."""
    if any(example.api is not None for example in page.examples):
        return APIS
    if any(example.awaits for example in page.examples):
        return ("async",)
    return ("session",)


def run_name(backend: str, api: str = "session") -> str:
    """What the tests call a run of the pages on ``backend`` (``sqlite``), or of their AsyncSession
    tabs (``sqlite-async``): the name in each test's id and in the records the runs leave."""
    return backend if api == "session" else f"{backend}-{api}"


# --- What a page shows ------------------------------------------------------------------------

_checker = OutputChecker()


def output_matches(want: str, got: str, flags: int = DOCTEST_FLAGS) -> bool:
    """Whether ``got`` is the output ``want`` shows, as the tests compare them (Sybil's checker)."""
    return _checker.check_output(want, got, flags)


def examples_on(page: Page, backend: str, series: str = DEFAULT_SERIES, api: str = "session") -> Iterable[Example]:
    """The examples the tests run when they run ``page`` on ``backend``, ``series`` and ``api``."""
    return (example for example in page.examples if example.runs_on(backend, series, api))
