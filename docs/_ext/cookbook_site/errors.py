"""Sphinx extension: the Errors page, every exception the recipe pages reproduce, with the pages that fix it.

Readers arrive with a traceback.  ``{error-index}`` lists every exception a recipe page shows
(the ``exc_msg`` of each doctest example the page model reads, in any tab, on any series or
API), so the list is made from the pages' verified outputs when the site is built and cannot
drift from them.  Each exception is

- grouped by its class; a wrapped SQLAlchemy error
  (``sqlalchemy.exc.StatementError: (sqlalchemy.exc.MissingGreenlet) ...``) is listed under the
  wrapper and under the class it wraps, since a reader may search for either;
- shown by its message, with what differs from one case to the next elided to ``…``: object
  addresses, and the page's own names and values (the classes, tables and columns its code
  defines, the strings it stores), so the same error from two pages, two databases or two
  SQLAlchemy series is one entry; the SQL and parameters that follow a message are left out;
- given its SQLAlchemy error code, read from the ``(Background on this error at: ...)`` tail,
  linked to SQLAlchemy's page for it;
- linked to each section that shows it (the page model knows each example's line; Sphinx knows
  which section that line is in and its id) and to the page's fixes.

The groups and entries are made when the Errors page is read, so the page's contents list
them, from the exceptions each recipe page's reading left (the Errors page is read after them);
the links are filled in when it is written, from the sections each recipe page's reading left.
An edit that changes the exceptions a recipe page shows, or a page added or removed, makes
Sphinx read the Errors page again; an edit that changes its sections, write it again; an edit to
a page's prose alone leaves it as it is (the live preview rebuilds the one page).

Each recipe page also gets an index entry for each message it shows, under its class, at the
section that shows it (:class:`ErrorIndexEntries`): the general index lists the classes with
their messages, and the site's search (docs/_static/search-scorer.js) finds the section whose
message a reader's pasted error holds, which the words alone cannot tell apart from the pages
that only use the same words ("A transaction is already begun on this Session.").
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.ext.intersphinx import inventory_exists, resolve_reference_in_inventory
from sphinx.transforms import SphinxTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode
from sphinx.writers.html5 import HTML5Translator

from cookbook_site import page as page_model
from cookbook_site.page import API_LABELS, BACKEND_LABELS, BACKENDS, DEFAULT_SERIES, SERIES, Example, Page, PageError
from cookbook_site.pagedata import PageData

logger = logging.getLogger(__name__)

#: What stands for an elided value.
ELIDED = "…"
#: SQLAlchemy's page for an error code, in the series the site is built with.
ERROR_CODE_URL = f"https://sqlalche.me/e/{DEFAULT_SERIES.replace('.', '')}/{{code}}"
#: The intersphinx inventories a class name is looked up in (conf.py's ``intersphinx_mapping``).
INVENTORIES = ("sqlalchemy", "python")
#: A section of a recipe page that holds its fixes: "Fixes", "The fix: ...".
FIX_TITLE = re.compile(r"^(?:the )?fix(?:es)?\b", re.I)

#: Each recipe page's sections, as its reading left them (see :func:`on_doctree_read`).
SECTIONS = PageData("cookbook_error_sections")
#: The pages that hold an ``{error-index}``.
INDEX_PAGES = PageData("cookbook_error_index_pages")
#: The exceptions each recipe page shows, as its reading left them (JSON, see :func:`_dumped`):
#: the Errors page, read after every recipe page of its build, is made from these.
ROWS = PageData("cookbook_error_rows")


# --- Reading an exception ---------------------------------------------------------------------

_CLASS = re.compile(r"^(?P<cls>[A-Za-z_][\w.]*?)(?::[ \t]?|\.\.\.[ \t]|[ \t]*$)")
_BACKGROUND = re.compile(r"[ \t]*\(Background on this error at: https?://sqlalche\.me/e/[\w.]+/(?P<code>\w+)\)")
#: A SQLAlchemy error wrapped in another (a driver's error, also in parentheses, is not one).
_WRAPPED = re.compile(r"^\((?P<cls>sqlalchemy(?:\.orm)?\.exc\.\w+)\)[ \t]")
#: A line that follows an error's message, about the statement rather than the error.
_CONTEXT = re.compile(
    r"^(?:\[SQL:|\[parameters:|\[generated in|\(Background on this error|DETAIL:|HINT:|LINE \d+:|\.\.\.$)"
)


@dataclass(frozen=True)
class Shown:
    """An exception as a page shows it: its class, its message, and what SQLAlchemy adds."""

    #: The class, as the traceback names it (``sqlalchemy.exc.IntegrityError``).
    cls: str
    #: The message, every line of it, as the page shows it.
    message: str
    #: The SQLAlchemy error codes its ``(Background on this error at: ...)`` tails give, in order.
    codes: tuple[str, ...]

    @property
    def wrapped(self) -> str | None:
        """The SQLAlchemy class a SQLAlchemy error wraps (``sqlalchemy.exc.MissingGreenlet`` in
        ``StatementError: (sqlalchemy.exc.MissingGreenlet) ...``), or None."""
        found = _WRAPPED.match(self.message)
        return found.group("cls") if found else None

    @property
    def code(self) -> str | None:
        """This exception's own error code: the last tail (the first ones belong to errors it wraps)."""
        return self.codes[-1] if self.codes else None


def shown(exc_msg: str) -> Shown:
    """Read an ``exc_msg``; a page whose exception names no class is a ``ValueError``.

    A class the page elides part of (``sqlalchemy.exc...MissingGreenlet...``, to match it wrapped
    or not) is read as the class it names.
    """
    found = _CLASS.match(exc_msg)
    if found is None:
        raise ValueError(f"no exception class at the start of {exc_msg.splitlines()[0]!r}")
    parts = [part for part in found.group("cls").split(".") if part]
    cls = ".".join(parts)
    return Shown(
        cls, exc_msg[found.end() :].rstrip("\n"), tuple(m.group("code") for m in _BACKGROUND.finditer(exc_msg))
    )


def head(message: str) -> str:
    """The part of a message a reader recognises: its lines up to the SQL, parameters, database
    detail or error-code tail that follow it, on one line."""
    lines: list[str] = []
    for number, line in enumerate(message.splitlines()):
        if number and _CONTEXT.match(line.strip()):
            break
        lines.append(_BACKGROUND.sub("", line).strip())
    return " ".join(line for line in lines if line)


def short(cls: str) -> str:
    """``sqlalchemy.exc.IntegrityError`` -> ``IntegrityError``."""
    return cls.rpartition(".")[2]


# --- A page's own names and values ------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """What a page's code defines, which its errors quote back: elided on the Errors page."""

    #: Classes, tables, columns and attributes its code defines.
    names: frozenset[str] = frozenset()
    #: Its tables (a constraint is named after its table: ``user_account_email_key``).
    tables: frozenset[str] = frozenset()
    #: The strings it stores in them (``"ada@example.com"``).
    values: frozenset[str] = frozenset()


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _trees(examples: Iterable[Example]) -> Iterator[ast.AST]:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    for example in examples:
        try:
            yield compile(example.source, "<example>", "exec", flags, dont_inherit=True)
        except SyntaxError:
            continue


def _string(value: ast.expr | None) -> str | None:
    return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None


def _strings(values: Iterable[ast.expr | None]) -> Iterator[str]:
    return (text for value in values if (text := _string(value)) is not None)


def _assigned(statement: ast.stmt) -> Iterator[tuple[str, ast.expr | None]]:
    """The names a statement of a class body assigns, each with its value."""
    if isinstance(statement, ast.Assign):
        yield from ((t.id, statement.value) for t in statement.targets if isinstance(t, ast.Name))
    elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        yield statement.target.id, statement.value


def page_names(examples: Iterable[Example]) -> Names:
    """The names and values a page's examples define: its classes with their attributes, columns
    and methods, its tables, and the strings it passes to its own classes and functions or stores
    under its columns."""
    found = [node for tree in _trees(examples) for node in ast.walk(tree)]
    classes: set[str] = set()
    functions: set[str] = set()
    names: set[str] = set()
    tables: set[str] = set()
    for node in found:
        if isinstance(node, ast.ClassDef):
            classes.add(node.name)
            for statement in node.body:
                for name, value in _assigned(statement):
                    if name == "__tablename__":
                        tables.update(_strings([value]))
                    else:
                        names.add(name)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
        elif isinstance(node, ast.Call) and _callee(node) in ("Table", "Column", "mapped_column", "ForeignKey"):
            # Table("team", ...), Column("name", ...), ForeignKey("team.id")
            first = [part for name in _strings(node.args[:1]) for part in name.split(".")]
            (tables if _callee(node) == "Table" else names).update(first)
    names = {name for name in names | functions | classes | tables if not name.startswith("__")}
    values: set[str] = set()
    for node in found:
        if isinstance(node, ast.Call) and _callee(node) in classes | functions:
            values.update(_strings([*node.args, *(keyword.value for keyword in node.keywords)]))
        elif isinstance(node, ast.Call) and _callee(node) == "values":
            values.update(_strings(keyword.value for keyword in node.keywords if keyword.arg in names))
        elif isinstance(node, ast.Dict):
            # {"name": "alice"}: a row's values, under its columns' names
            values.update(_strings(v for k, v in zip(node.keys, node.values, strict=True) if _string(k) in names))
    return Names(frozenset(names), frozenset(tables), frozenset(values))


# --- Eliding them -----------------------------------------------------------------------------

_ADDRESS = re.compile(r"\b0x(?:[0-9a-fA-F]+|…)")
_REPR = re.compile(r"<(?P<name>\w+) at 0x…>")
_QUOTED = re.compile(r"(?<!\w)(?P<quote>['\"`])(?P<content>[^'\"`\n]+)(?P=quote)(?!\w)")
_DOTTED = re.compile(r"(?<![\w.…])[\w…]+(?:\.[\w…]+)+(?![\w(])")
_TABLE_WORD = re.compile(r"\b(?P<word>(?:table|tables:?|relation)) (?P<names>\w+(?:, \w+)*)")
#: Module parts that may come before a page's class in a repr (``<class '__main__.User'>``).
_MODULE_PARTS = frozenset({"__main__"})


def _is_name(text: str, names: Names) -> bool:
    """Whether ``text`` is one of the page's names, dotted (``user_account.email``, ``'...User'``)
    or a constraint named after one of its tables (``user_account_email_key``)."""
    parts = [part for part in re.split(r"[.…]+", text) if part]
    if not parts or not all(re.fullmatch(r"\w+", part) for part in parts):
        return False
    if len(parts) == 1 and any(parts[0].startswith(table + "_") for table in names.tables):
        return True
    return parts[-1] in names.names and all(p in names.names or p in _MODULE_PARTS for p in parts[:-1])


def elide(text: str, names: Names = Names()) -> str:
    """A message with what is particular to one case replaced by ``…``: the ``...`` a page writes,
    object addresses, and the page's ``names`` and values where the message quotes them, dots
    them together or lists them after "table"; the words around them are kept."""
    text = _ADDRESS.sub("0x" + ELIDED, text.replace("...", ELIDED))
    text = _REPR.sub(lambda m: f"<{ELIDED if m['name'] in names.names else m['name']} at 0x{ELIDED}>", text)

    def quoted(m: re.Match[str]) -> str:
        items = m["content"].split(", ")
        if all(_is_name(item, names) for item in items) or m["content"] in names.values:
            return m["quote"] + ELIDED + m["quote"]
        return m[0]

    text = _QUOTED.sub(quoted, text)
    text = _DOTTED.sub(lambda m: ELIDED if _is_name(m[0], names) else m[0], text)

    def listed(m: re.Match[str]) -> str:
        if all(item in names.tables for item in m["names"].split(", ")):
            return f"{m['word']} {ELIDED}"
        return m[0]

    return _TABLE_WORD.sub(listed, text)


# --- The index --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Occurrence:
    """One example that shows an exception: the page, its line, and the tabs it sits in."""

    docname: str
    line: int
    backend: str | None
    series: str | None
    api: str | None


@dataclass
class Entry:
    """One message of a class, as the Errors page lists it, with every example that shows it."""

    #: The message, elided; prefixed with the wrapper's class where the group is the wrapped one.
    message: str
    codes: set[str] = field(default_factory=set)
    occurrences: list[Occurrence] = field(default_factory=list)


@dataclass
class Group:
    """Every message of one exception class."""

    cls: str
    entries: dict[str, Entry] = field(default_factory=dict)

    def add(self, message: str, code: str | None, occurrence: Occurrence) -> None:
        entry = self.entries.setdefault(message, Entry(message))
        if code is not None:
            entry.codes.add(code)
        entry.occurrences.append(occurrence)

    def sorted_entries(self) -> list[Entry]:
        return sorted(self.entries.values(), key=lambda entry: (entry.message.casefold(), entry.message))


def recipe_pages(docs: Path) -> Iterator[tuple[str, Path]]:
    """Each recipe page under ``docs``: its docname and its source."""
    for path in page_model.recipe_pages(docs):
        yield path.relative_to(docs).with_suffix("").as_posix(), path


#: One exception a page shows, as its group lists it: the class it is listed under, the message
#: (elided), its error code, and the example that shows it.
Row = tuple[str, str, str | None, Occurrence]


def rows_of(docname: str, page: Page) -> list[Row]:
    """Every exception one page shows, as the Errors page lists it: under its class, and a wrapped
    one under the class it wraps too (with the wrapper's class before its message); each message
    elided with the page's names.

    An exception that names no class is a ``ValueError`` naming its page and line.
    """
    rows: list[Row] = []
    names: Names | None = None
    for example in page.examples:
        if example.exc_msg is None:
            continue
        names = names or page_names(page.examples)
        try:
            error = shown(example.exc_msg)
        except ValueError as exc:
            raise ValueError(f"{docname}, line {example.line}: {exc}") from None
        where = Occurrence(docname, example.line, example.backend, example.series, example.api)
        message = elide(head(error.message), names)
        rows.append((error.cls, message, error.code, where))
        if error.wrapped is not None and error.wrapped != error.cls:
            rows.append((error.wrapped, f"{error.cls}: {message}", error.code, where))
    return rows


def grouped(rows: Iterable[Row]) -> list[Group]:
    """Rows grouped by class, in order of class name."""
    groups: dict[str, Group] = {}
    for cls, message, code, where in rows:
        groups.setdefault(cls, Group(cls)).add(message, code, where)
    return sorted(groups.values(), key=lambda group: (short(group.cls).casefold(), group.cls))


def index(pages: Iterable[tuple[str, Page]]) -> list[Group]:
    """Every exception the pages show (see :func:`rows_of`), grouped by class."""
    return grouped(row for docname, page in pages for row in rows_of(docname, page))


def pages_of(groups: Iterable[Group]) -> set[str]:
    """The pages that show an exception of these groups."""
    return {o.docname for group in groups for entry in group.entries.values() for o in entry.occurrences}


def qualifier(occurrences: Iterable[Occurrence]) -> str:
    """The tabs a section's examples of one message sit in, as the site names them ("PostgreSQL,
    MariaDB; SQLAlchemy 2.0; AsyncSession"); empty where they run everywhere."""
    found = list(occurrences)
    said = []
    backends = {o.backend for o in found}
    if None not in backends and len(backends) < len(BACKENDS):
        said.append(", ".join(BACKEND_LABELS[name] for name in BACKENDS if name in backends))
    series = {o.series for o in found}
    if None not in series and len(series) < len(SERIES):
        said.append(", ".join(f"SQLAlchemy {s}" for s in SERIES if s in series))
    apis = {o.api for o in found}
    if None not in apis and len(apis) == 1:
        said.append(API_LABELS[str(next(iter(apis)))])
    return "; ".join(said)


# --- What each recipe page's reading leaves ---------------------------------------------------


def _title_parts(title: nodes.Element) -> list[list[str]]:
    """A heading as text and code spans (``[kind, text]``), to be rendered again on the Errors page."""
    return [["code" if isinstance(child, nodes.literal) else "text", child.astext()] for child in title.children]


def sections_of(doctree: nodes.document) -> dict[str, Any]:
    """A page's sections, in order: line, id, heading, and the id of the top-level section
    (``## ...``) each is in; and which top-level section holds its fixes."""
    found = []
    fix: dict[str, Any] | None = None
    for section in doctree.findall(nodes.section):
        if not section["ids"] or not section.children or not isinstance(section[0], nodes.title):
            continue
        depth, parent, chapter = 0, section.parent, section
        while parent is not None:
            if isinstance(parent, nodes.section):
                depth += 1
                if isinstance(parent.parent, nodes.section):
                    chapter = parent
            parent = parent.parent
        title = _title_parts(section[0])
        anchor = "" if depth == 0 else section["ids"][0]
        found.append({"line": section.line or 0, "id": anchor, "title": title, "chapter": chapter["ids"][0]})
        if fix is None and depth == 1 and FIX_TITLE.match(section[0].astext()):
            fix = {"id": anchor, "title": title}
    return {"sections": found, "fix": fix}


def section_at(sections: list[dict[str, Any]], line: int) -> int:
    """Which of a page's sections (as :func:`sections_of` lists them) holds ``line``; -1 for none."""
    return max((i for i, section in enumerate(sections) if section["line"] <= line), default=-1)


def on_doctree_read(app: Sphinx, doctree: nodes.document) -> None:
    """Keep where each recipe page's sections start, for the Errors page's links."""
    docname = app.env.docname
    if page_model.is_recipe(docname):
        SECTIONS.of(app.env)[docname] = json.dumps(sections_of(doctree))


def _dumped(rows: list[Row]) -> str:
    return json.dumps([[cls, message, code, astuple(where)] for cls, message, code, where in rows])


def _loaded(data: str) -> list[Row]:
    return [(cls, message, code, Occurrence(*where)) for cls, message, code, where in json.loads(data)]


def _lines(rows: list[Row]) -> list[int]:
    """The lines of a page's examples that show an exception, in order: the Errors page names an
    example by its place in this list, so an edit that only moves it leaves the Errors page as it is."""
    return sorted({where.line for _, _, _, where in rows})


def _without_lines(data: str) -> str:
    """Kept rows with each example's line replaced by its place among the page's examples."""
    rows = _loaded(data)
    place = {line: number for number, line in enumerate(_lines(rows))}
    return json.dumps(
        [
            [cls, message, code, where.docname, place[where.line], where.backend, where.series, where.api]
            for cls, message, code, where in rows
        ]
    )


def _current_rows(env: BuildEnvironment, docname: str) -> list[Row]:
    kept = ROWS.of(env).get(docname) or _rows_now(env, docname)
    return _loaded(kept) if kept else []


def _links(env: BuildEnvironment, docname: str) -> str:
    """What the Errors page writes about a page, besides its messages: its title, and the section
    of each of its examples that shows an exception, and its fixes' section."""
    title = env.titles.get(docname)
    sections = json.loads(SECTIONS.of(env).get(docname, '{"sections": [], "fix": null}'))
    kept = ROWS.of(env).get(docname)  # a page not read before has none: nothing was written about it
    at = [section_at(sections["sections"], line) for line in _lines(_loaded(kept) if kept else [])]
    shown = [[sections["sections"][i]["id"], sections["sections"][i]["title"]] if i >= 0 else None for i in at]
    return json.dumps([title.astext() if title is not None else None, sections["fix"], shown])


def _rows_now(env: BuildEnvironment, docname: str) -> str | None:
    """What a recipe page's source shows now, as :data:`ROWS` keeps it; None for a page the
    page model cannot read (the downloads and Run extensions report it) or whose errors it cannot."""
    try:
        return _dumped(rows_of(docname, page_model.read(env.doc2path(docname))))
    except (PageError, ValueError):
        return None


def on_env_get_outdated(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """The Errors page, to be read again when a recipe page added, changed or removed shows
    other exceptions than it did (an edit to a page's prose leaves the Errors page alone)."""
    kept = ROWS.of(env)
    for docname in sorted(added | changed | removed):
        if not page_model.is_recipe(docname):
            continue
        before = kept.get(docname)
        if before is None or docname in removed:
            return sorted(INDEX_PAGES.of(env))
        now = _rows_now(env, docname)
        if now is None or _without_lines(before) != _without_lines(now):
            return sorted(INDEX_PAGES.of(env))
    return []


_LINKS_BEFORE = "cookbook_error_links_before"


def _holds_index(env: BuildEnvironment, docname: str) -> bool:
    """Whether a page holds an ``{error-index}`` (as its last reading found, or its source says)."""
    if docname in INDEX_PAGES.of(env):
        return True
    try:
        return "{error-index}" in Path(env.doc2path(docname)).read_text(encoding="utf-8")
    except OSError:
        return False


def on_env_before_read_docs(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    """Read the Errors page after every recipe page (it is made from what their reading leaves),
    and keep what it writes about the pages about to be read again, to see whether that changes."""
    last = [docname for docname in docnames if _holds_index(env, docname)]
    docnames[:] = [docname for docname in docnames if docname not in last] + last
    recipes = [docname for docname in docnames if page_model.is_recipe(docname)]
    setattr(env, _LINKS_BEFORE, {docname: _links(env, docname) for docname in recipes})


def on_env_updated(app: Sphinx, env: BuildEnvironment) -> list[str]:
    """The Errors page, to be written again when what it says about a recipe page read in this
    build changed: the page's title, or the section that shows an exception, or its fixes'."""
    before: dict[str, str] = getattr(env, _LINKS_BEFORE, {})
    setattr(env, _LINKS_BEFORE, {})
    if any(_links(env, docname) != kept for docname, kept in before.items()):
        return sorted(INDEX_PAGES.of(env))
    return []


# --- Each message in the index, at the sections that show it --------------------------------------


def index_entries(rows: list[Row], sections: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The index entries of a recipe page's messages (its :func:`rows_of`): for each section (by
    id, ``""`` for the page) that shows one, ``Class; message`` for each message it shows, as the
    Errors page lists it (a message the page elides entirely, ``…``, is indexed by its class
    alone), in the Errors page's order."""
    entries: dict[str, list[str]] = {}
    for group in grouped(rows):
        for entry in group.sorted_entries():
            value = f"{short(group.cls)}; {entry.message}" if re.search(r"\w", entry.message) else short(group.cls)
            for occurrence in entry.occurrences:
                at = section_at(sections, occurrence.line)
                found = entries.setdefault(sections[at]["id"] if at >= 0 else "", [])
                if value not in found:
                    found.append(value)
    return entries


class ErrorIndexEntries(SphinxTransform):
    """Give each section of a recipe page that shows an exception an index entry for it (a ``main``
    entry: the general index puts it first, and the site's search takes only those)."""

    # Before Sphinx's SphinxDomains (850), which collects the index entries for the general index.
    default_priority = 840

    def apply(self, **kwargs: Any) -> None:
        docname = self.env.docname
        if not page_model.is_recipe(docname):
            return
        try:
            rows = rows_of(docname, page_model.read(self.env.doc2path(docname)))
        except PageError:
            return  # the downloads and Run extensions report the page
        except ValueError:
            return  # the Errors page reports it
        ROWS.of(self.env)[docname] = _dumped(rows)
        sections = {
            str(section["ids"][0]): section for section in self.document.findall(nodes.section) if section["ids"]
        }
        found = sections_of(self.document)["sections"]
        for anchor, values in index_entries(rows, found).items():
            where = sections[anchor] if anchor else next(iter(sections.values()))
            where.insert(1, addnodes.index(entries=[("single", value, anchor, "main", None) for value in values]))


# --- The directive ----------------------------------------------------------------------------


class error_source(nodes.General, nodes.Element):  # noqa: N801 (docutils node naming)
    """The examples of one page that show one message (``docname``; ``occurrences``: place among
    the page's examples that show an exception, backend, series, API of each), in a list:
    replaced by a linked item per section when the page is written, from the page's lines then."""


class error_message(nodes.literal):  # noqa: N801 (docutils node naming)
    """A message, as code: in HTML one ``<code>`` without Sphinx's ``<span class="pre">`` around
    each word (a third of the page's weight); other builders write it as any literal."""


def visit_error_message_html(self: HTML5Translator, node: error_message) -> None:
    self.body.append(self.starttag(node, "code", "", CLASS="docutils literal notranslate") + self.encode(node.astext()))
    raise nodes.SkipChildren


def depart_error_message_html(self: HTML5Translator, node: error_message) -> None:
    self.body.append("</code>")


def _plural(count: int, noun: str, plural: str = "") -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _class_name(env: BuildEnvironment, cls: str) -> nodes.Node:
    """The class's full name, linked to its documentation where an inventory has it."""
    text = nodes.literal(cls, cls)
    xref = addnodes.pending_xref("", refdomain="py", reftype="exc", reftarget=cls, refexplicit=True)
    for inventory in INVENTORIES:
        if inventory_exists(env, inventory):
            found = resolve_reference_in_inventory(env, inventory, xref, text)
            if found is not None:
                return found
    return text


def _code(code: str) -> nodes.Node:
    """An error code, linked to SQLAlchemy's page for it."""
    url = ERROR_CODE_URL.format(code=code)
    return nodes.reference("", "", nodes.literal(code, code), refuri=url, classes=["sqlalchemy-error-code"])


def _entry(entry: Entry, lines: dict[str, list[int]]) -> nodes.list_item:
    """A message, its error code, and a list with a placeholder per page that shows it (each
    example by its place among the page's examples that show an exception, ``lines``)."""
    message = nodes.paragraph("", "", error_message(entry.message, entry.message))
    for code in sorted(entry.codes):
        message += [nodes.Text(" · SQLAlchemy error "), _code(code)]
    by_page: dict[str, list[Occurrence]] = {}
    for occurrence in entry.occurrences:
        by_page.setdefault(occurrence.docname, []).append(occurrence)
    where = nodes.bullet_list()
    for docname, occurrences in by_page.items():
        places = [lines[docname].index(o.line) for o in occurrences]
        where += error_source(
            docname=docname,
            occurrences=[[p, o.backend, o.series, o.api] for p, o in zip(places, occurrences, strict=True)],
        )
    return nodes.list_item("", message, where)


class ErrorIndex(SphinxDirective):
    """Every exception the recipe pages show: a sentence with the counts, then a section per class."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        INDEX_PAGES.of(self.env)[self.env.docname] = ""
        # Each page's rows as its reading in this build or an earlier one left them (this page is
        # read after them); from its source where no reading left them (a page the page model
        # cannot read, or one read by another process of a parallel build).
        kept = ROWS.of(self.env)
        by_page: dict[str, list[Row]] = {}
        for docname, path in recipe_pages(Path(self.env.srcdir)):
            if docname in kept:
                by_page[docname] = _loaded(kept[docname])
                continue
            try:
                by_page[docname] = rows_of(docname, page_model.read(path))
            except PageError:
                continue  # the downloads and Run extensions report the page
            except ValueError as exc:
                logger.warning("error index: %s", exc, location=self.get_location(), type="error_index")
                return []
        groups = grouped(row for rows in by_page.values() for row in rows)
        lines = {docname: _lines(rows) for docname, rows in by_page.items()}
        messages = sum(len(group.entries) for group in groups)
        said = (
            f"{_plural(len(groups), 'exception class', 'exception classes')}, {_plural(messages, 'message')}, shown on "
        )
        result: list[nodes.Node] = [nodes.paragraph(text=f"{said}{_plural(len(pages_of(groups)), 'page')}.")]
        for group in groups:
            section = nodes.section(ids=[nodes.make_id(group.cls)], names=[nodes.fully_normalize_name(group.cls)])
            section += nodes.title(short(group.cls), short(group.cls))
            count = len(group.entries)
            counts = f": {_plural(count, 'message')} on {_plural(len(pages_of([group])), 'page')}" if count > 1 else ""
            section += nodes.paragraph("", "", _class_name(self.env, group.cls), nodes.Text(counts))
            section += nodes.bullet_list("", *(_entry(entry, lines) for entry in group.sorted_entries()))
            self.state.document.note_implicit_target(section, section)
            result.append(section)
        return result


# --- The links, when the Errors page is written -------------------------------------------------


def _heading(parts: list[list[str]]) -> list[nodes.Node]:
    return [nodes.literal(text, text) if kind == "code" else nodes.Text(text) for kind, text in parts]


def _sections(app: Sphinx, docname: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    known = json.loads(SECTIONS.of(app.env).get(docname, '{"sections": [], "fix": null}'))
    return known["sections"], known["fix"]


def _where(app: Sphinx, fromdocname: str, node: error_source) -> list[nodes.Node]:
    """One item for each section of a page that shows a message: a link to it, the tabs its
    examples sit in, and a link to the page's fixes unless the section is one of them."""
    docname: str = node["docname"]
    title = app.env.titles.get(docname)
    page_title = title.astext() if title is not None else docname
    sections, fix = _sections(app, docname)
    by_section: dict[int, list[Occurrence]] = {}
    lines = _lines(_current_rows(app.env, docname))
    for place, backend, series, api in node["occurrences"]:
        line = lines[place] if place < len(lines) else 0
        by_section.setdefault(section_at(sections, line), []).append(Occurrence(docname, line, backend, series, api))
    items: list[nodes.Node] = []
    for at, occurrences in by_section.items():
        section = sections[at] if at >= 0 else None
        content: list[nodes.Node] = [nodes.Text(page_title)]
        if section is not None and section["id"]:
            content += [nodes.Text(" › "), *_heading(section["title"])]
        said = nodes.paragraph(
            "", "", make_refnode(app.builder, fromdocname, docname, section["id"] if section else "", content)
        )
        tabs = qualifier(occurrences)
        if tabs:
            said += nodes.Text(f" ({tabs})")
        if fix is not None and (section is None or section["chapter"] != fix["id"]):
            said += [
                nodes.Text(" · "),
                make_refnode(app.builder, fromdocname, docname, fix["id"], _heading(fix["title"])),
            ]
        items.append(nodes.list_item("", said))
    return items


def on_doctree_resolved(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Fill in the Errors page's links to the sections that show each message, and their fixes."""
    for node in list(doctree.findall(error_source)):
        node.replace_self(_where(app, docname, node))


def setup(app: Sphinx) -> dict[str, Any]:
    # It reads recipe pages, MyST with sphinx-design tabs, and links class names through intersphinx.
    app.setup_extension("myst_parser")
    app.setup_extension("sphinx_design")
    app.setup_extension("sphinx.ext.intersphinx")
    app.add_node(error_source)
    app.add_node(error_message, html=(visit_error_message_html, depart_error_message_html))
    app.add_directive("error-index", ErrorIndex)
    app.add_transform(ErrorIndexEntries)
    app.connect("doctree-read", on_doctree_read)
    app.connect("env-get-outdated", on_env_get_outdated)
    app.connect("env-before-read-docs", on_env_before_read_docs)
    app.connect("env-updated", on_env_updated)
    app.connect("doctree-resolved", on_doctree_resolved)
    SECTIONS.connect(app)
    INDEX_PAGES.connect(app)
    ROWS.connect(app)
    return {"version": "2", "env_version": 3, "parallel_read_safe": True, "parallel_write_safe": True}
