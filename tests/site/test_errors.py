"""The Errors page lists every exception the recipe pages show, made from the pages, never typed in."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from docutils.nodes import make_id

from cookbook_site import page as page_model
from cookbook_site.errors import (
    ERROR_CODE_URL,
    Group,
    Names,
    Occurrence,
    elide,
    head,
    index,
    index_entries,
    page_names,
    qualifier,
    recipe_pages,
    rows_of,
    short,
    shown,
)
from cookbook_site.page import Page
from tests.browser.site import DOCS, build_site, indexed_words, search_index

#: What a build of the real site says about the Errors page.
ERRORS_PAGE = "errors.html"


def made_up(path: str, code: str) -> Page:
    """A page with one Python block (a doctest if it starts with ``>>>``), read by the page model."""
    return page_model.read(path, text=f"# A page\n\n```python\n{textwrap.dedent(code).strip()}\n```\n")


NAMES = Names(
    names=frozenset({"User", "Keyword", "user_account", "keyword", "email", "name", "id", "team_id"}),
    tables=frozenset({"user_account", "keyword"}),
    values=frozenset({"ada@example.com", "Flann O'Brien"}),
)


# --- Reading an exception ------------------------------------------------------------------------


def test_the_class_message_and_code_are_read_from_the_exception() -> None:
    """The class before the colon; the code from SQLAlchemy's tail; the last tail is the error's own."""
    error = shown(
        "sqlalchemy.exc.PendingRollbackError: This Session's transaction has been rolled back. Original exception"
        " was: (sqlite3.IntegrityError) UNIQUE constraint failed: user_account.name\n[SQL: INSERT INTO user_account"
        " (name) VALUES (?)]\n(Background on this error at: https://sqlalche.me/e/21/gkpj)"
        " (Background on this error at: https://sqlalche.me/e/21/7s2a)\n"
    )
    assert ("sqlalchemy.exc.PendingRollbackError", ("gkpj", "7s2a"), "7s2a") == (error.cls, error.codes, error.code)


def test_a_wrapped_sqlalchemy_error_names_the_class_it_wraps() -> None:
    """``StatementError: (sqlalchemy.exc.MissingGreenlet) ...`` wraps MissingGreenlet."""
    error = shown(
        "sqlalchemy.exc.StatementError: (sqlalchemy.exc.MissingGreenlet) greenlet_spawn has not been called\n"
    )
    assert "sqlalchemy.exc.MissingGreenlet" == error.wrapped


def test_a_drivers_error_in_parentheses_is_not_a_wrapped_class() -> None:
    """The driver's exception (``sqlite3``, ``psycopg``, asyncpg's adapter) is part of the message."""
    wrapped = [
        shown(f"sqlalchemy.exc.IntegrityError: ({driver}) duplicate key\n").wrapped
        for driver in ("sqlite3.IntegrityError", "sqlalchemy.dialects.postgresql.asyncpg.IntegrityError")
    ]
    assert [None, None] == wrapped


def test_a_class_written_with_an_ellipsis_is_the_class_it_names() -> None:
    """``sqlalchemy.exc...MissingGreenlet...`` (to match the error wrapped or not) is MissingGreenlet."""
    error = shown("sqlalchemy.exc...MissingGreenlet... greenlet_spawn has not been called...\n")
    assert ("sqlalchemy.exc.MissingGreenlet", "greenlet_spawn has not been called...") == (error.cls, error.message)


def test_an_exception_without_a_class_is_an_error() -> None:
    """A page cannot show an exception the index cannot file."""
    with pytest.raises(ValueError, match="no exception class"):
        shown("(not a class) something went wrong\n")


def test_the_message_stops_where_the_sql_begins() -> None:
    """The SQL, parameters, database detail and error-code tail follow the message; they are left out."""
    message = (
        '(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "k"\n'
        "DETAIL:  Key (name)=(alice) already exists.\n[SQL: INSERT INTO t (name) VALUES (%(name)s)]\n"
        "[parameters: {'name': 'alice'}]\n(Background on this error at: https://sqlalche.me/e/21/gkpj)"
    )
    assert '(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "k"' == head(message)


def test_a_message_of_several_lines_is_kept_on_one() -> None:
    """A message that goes on to a second line (FastAPI's validation error) is kept whole."""
    assert "1 validation error: {'type': 'get_attribute_error'}" == head(
        "1 validation error:\n  {'type': 'get_attribute_error'}\n"
    )


# --- Eliding what is particular to one page ----------------------------------------------------


@pytest.mark.parametrize(
    ("message", "elided"),
    [
        # object addresses, and the page's class in an instance's repr
        (
            "Instance <User at 0x7f3a2c1e5d90> is not bound to a Session",
            "Instance <… at 0x…> is not bound to a Session",
        ),
        ("Instance '<Keyword at 0x...>' has been deleted", "Instance '<… at 0x…>' has been deleted"),
        ("<sqlalchemy.engine.Engine object at 0x7f00>", "<sqlalchemy.engine.Engine object at 0x…>"),
        # the page's tables and columns, quoted, dotted together, or named in a constraint
        ("UNIQUE constraint failed: user_account.email", "UNIQUE constraint failed: …"),
        ('violates unique constraint "user_account_email_key"', 'violates unique constraint "…"'),
        ("Duplicate entry 'ada@example.com' for key 'email'", "Duplicate entry '…' for key '…'"),
        ("FOREIGN KEY (`team_id`) REFERENCES `user_account` (`id`)", "FOREIGN KEY (`…`) REFERENCES `…` (`…`)"),
        ("key (<class '__main__.User'>, (1,), None)", "key (<class '…'>, (1,), None)"),
        ("key (<class '...User'>, (1,), None)", "key (<class '…'>, (1,), None)"),
        ("between tables: keyword, user_account.  Please", "between tables: ….  Please"),
        ('unresolvable cycles between tables "keyword, user_account"', 'unresolvable cycles between tables "…"'),
        ("Can't update table keyword using NULL", "Can't update table … using NULL"),
        # the words a reader recognises are kept, quoted or not
        ("'AsyncSession' object has no attribute 'query'", "'AsyncSession' object has no attribute 'query'"),
        ("'User.name' is not available due to lazy='raise'", "'…' is not available due to lazy='raise'"),
        ("Specify 'fetch' or False", "Specify 'fetch' or False"),
        ("(sqlite3.IntegrityError) NOT NULL", "(sqlite3.IntegrityError) NOT NULL"),
        ("Please rollback() fully before proceeding", "Please rollback() fully before proceeding"),
        ("can't call await_only() here", "can't call await_only() here"),
        ("Original exception was: ...", "Original exception was: …"),
    ],
)
def test_elided(message: str, elided: str) -> None:
    """What differs between two pages' (or databases', or series') copies of an error becomes ``…``."""
    assert elided == elide(message, NAMES)


def test_an_apostrophe_does_not_open_a_quote() -> None:
    """``Can't`` and ``Session's`` leave the quotes after them paired as written."""
    assert "Can't attach <class '…'>; Session's" == elide("Can't attach <class '__main__.User'>; Session's", NAMES)


def test_a_pages_names_and_values_come_from_its_code() -> None:
    """Classes, their columns and attributes, tables, and the strings stored in them or passed to the
    page's own classes and functions; not the options it passes to SQLAlchemy."""
    page = made_up(
        "transactions/made-up.md",
        """
        class Team(Base):
            __tablename__ = "team"
            id: Mapped[int] = mapped_column(primary_key=True)
            label = mapped_column("team_label", String)
            members = relationship(lazy="raise")

            def __init__(self, name):
                self.cache = []

        def make(name):
            return Team(name)

        make("reds")
        session.add(Team(label="blues"))
        session.execute(insert(Team), [{"label": "greens"}])
        session.execute(update(Team).values(label="pinks"), execution_options={"synchronize_session": "fetch"})
        members = Table("member", metadata, Column("team_id", ForeignKey("team.id")))
        """,
    )
    names = page_names(page.examples)
    assert (
        {"Team", "team", "id", "label", "team_label", "members", "cache", "make", "member", "team_id"},
        {"team", "member"},
        {"reds", "blues", "greens", "pinks"},
    ) == (set(names.names), set(names.tables), set(names.values))


# --- Grouping ------------------------------------------------------------------------------------

UNIQUE = (
    "sqlalchemy.exc.IntegrityError: (sqlite3.IntegrityError) UNIQUE constraint failed: {table}.name\n"
    "[SQL: INSERT INTO {table} (name) VALUES (?)]\n(Background on this error at: https://sqlalche.me/e/{series}/gkpj)\n"
)


def raising(path: str, table: str, exc_msgs: list[str]) -> tuple[str, Page]:
    """A made-up page whose model has ``table`` and whose examples raise each of ``exc_msgs``."""
    prompts = "\n".join(f">>> fail()\nTraceback (most recent call last):\n...\n{m.strip()}" for m in exc_msgs)
    model = f'class Row(Base):\n    __tablename__ = "{table}"\n    name: Mapped[str]'
    text = f"# A page\n\n```python\n{model}\n```\n\n```python\n{prompts}\n```\n"
    return path.removesuffix(".md"), page_model.read(path, text=text)


def entries(groups: list[Group]) -> dict[str, list[tuple[str, list[str]]]]:
    """Each group's messages, and the pages of each, as the Errors page lists them."""
    return {
        group.cls: [(e.message, [o.docname for o in e.occurrences]) for e in group.sorted_entries()] for group in groups
    }


def test_one_error_from_two_pages_and_two_series_is_one_entry() -> None:
    """The page's own table and the series' link differ; the entry is one, listing both pages."""
    groups = index(
        [
            raising("transactions/a.md", "keyword", [UNIQUE.format(table="keyword", series="21")]),
            raising("querying/b.md", "user_account", [UNIQUE.format(table="user_account", series="20")]),
        ]
    )
    message = "(sqlite3.IntegrityError) UNIQUE constraint failed: …"
    assert {"sqlalchemy.exc.IntegrityError": [(message, ["transactions/a", "querying/b"])]} == entries(groups)


def test_the_error_code_is_kept_with_its_message() -> None:
    """The code is the entry's, whichever series' tail gave it."""
    groups = index([raising("transactions/a.md", "keyword", [UNIQUE.format(table="keyword", series="20")])])
    assert {"gkpj"} == groups[0].sorted_entries()[0].codes


def test_a_wrapped_error_is_listed_under_both_classes() -> None:
    """Under the wrapper as shown, and under the wrapped class with the wrapper's name in front."""
    wrapped = (
        "sqlalchemy.exc.StatementError: (sqlalchemy.exc.MissingGreenlet) greenlet_spawn has not been called\n"
        "[SQL: SELECT 1]\n(Background on this error at: https://sqlalche.me/e/21/xd2s)\n"
    )
    groups = index([raising("transactions/a.md", "keyword", [wrapped])])
    assert {
        "sqlalchemy.exc.MissingGreenlet": [
            (
                "sqlalchemy.exc.StatementError: (sqlalchemy.exc.MissingGreenlet) greenlet_spawn has not been called",
                ["transactions/a"],
            )
        ],
        "sqlalchemy.exc.StatementError": [
            ("(sqlalchemy.exc.MissingGreenlet) greenlet_spawn has not been called", ["transactions/a"])
        ],
    } == entries(groups)


def test_groups_are_in_order_of_the_class_name() -> None:
    """A reader scans for the class: ``KeyError`` comes between ``IntegrityError`` and ``TypeError``."""
    groups = index(
        [
            raising(
                "transactions/a.md",
                "keyword",
                ["TypeError: no\n", "KeyError: 'x'\n", UNIQUE.format(table="keyword", series="21")],
            )
        ]
    )
    assert ["sqlalchemy.exc.IntegrityError", "KeyError", "TypeError"] == [group.cls for group in groups]


def test_the_tabs_an_example_sits_in_are_named() -> None:
    """Examples of one section in some tabs only say which; tabs that cover everything say nothing."""
    some = [Occurrence("p", 1, "postgresql", "2.0", "async"), Occurrence("p", 2, "mariadb", "2.0", "async")]
    every = [Occurrence("p", 1, backend, series, None) for backend in page_model.BACKENDS for series in ("2.0", "2.1")]
    assert ("PostgreSQL, MariaDB; SQLAlchemy 2.0; AsyncSession", "") == (qualifier(some), qualifier(every))


# --- Every exception the pages show is listed ----------------------------------------------------


def site_index() -> list[Group]:
    """The index of the real pages, read as the extension reads them."""
    return index((docname, page_model.read(path)) for docname, path in recipe_pages(DOCS))


def shown_examples() -> Iterator[tuple[str, page_model.Example]]:
    for docname, path in recipe_pages(DOCS):
        for example in page_model.read(path).examples:
            if example.exc_msg is not None:
                yield docname, example


def test_every_exception_a_page_shows_is_listed_under_its_class() -> None:
    """Each doctest example that shows an exception, on every recipe page, in every tab, is one
    of the index's entries under its class, and a wrapped one under the class it wraps too."""
    listed = {
        (group.cls, o.docname, o.line) for group in site_index() for e in group.entries.values() for o in e.occurrences
    }
    expected = set()
    for docname, example in shown_examples():
        assert example.exc_msg is not None
        error = shown(example.exc_msg)
        expected.add((error.cls, docname, example.line))
        if error.wrapped is not None:
            expected.add((error.wrapped, docname, example.line))
    assert set() == expected - listed
    assert expected == listed


def test_the_pages_show_exceptions() -> None:
    """The index is not empty by accident: the recipe pages reproduce dozens of errors."""
    assert len(list(shown_examples())) > 100


# --- The built page ---------------------------------------------------------------------------


class Anchors(HTMLParser):
    """Every id, every link and the text of every ``<code>`` of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.code: list[str] = []
        self._in_code = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))
        if tag == "code":
            self._in_code = True
            self.code.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "code":
            self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.code[-1] += data


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module as the browser tests build it."""
    return build_site(tmp_path_factory.mktemp("site") / "html")


def article(built: Path) -> str:
    text = (built / ERRORS_PAGE).read_text(encoding="utf-8")
    return text[text.index("<article") : text.index("</article>")]


def test_the_errors_page_has_a_section_for_each_class(built: Path) -> None:
    """Each class is a section, its id made from the class's full name, titled with its name."""
    page = article(built)
    titles = re.findall(r'<section id="([^"]+)">\s*<h2>([^<]+)<', page)
    assert [(make_id(group.cls), short(group.cls)) for group in site_index()] == titles


def test_the_errors_page_shows_each_message(built: Path) -> None:
    """Each message of each class is on the page as the index has it, in its order."""
    page = article(built)
    code = Anchors(page[page.index("<section", page.index("<section") + 1) :]).code  # after the introduction
    messages = [entry.message for group in site_index() for entry in group.sorted_entries()]
    assert messages == [text for text in code if text in set(messages)]


def test_each_link_leads_to_a_section_that_exists(built: Path) -> None:
    """Every link to a page of the site names a section that page has (Sphinx's own ids)."""
    pages: dict[str, set[str]] = {}
    broken = []
    links = [link for link in Anchors(article(built)).links if not link.startswith(("http:", "https:", "#"))]
    for link in links:
        target, _, anchor = link.partition("#")
        if target not in pages:
            pages[target] = Anchors((built / target).read_text(encoding="utf-8")).ids
        if anchor and anchor not in pages[target]:
            broken.append(link)
    assert [] == broken
    assert {f"{docname}.html" for docname, _ in shown_examples()} == set(pages)


def test_error_codes_link_to_sqlalchemys_page_for_them(built: Path) -> None:
    """Each code an entry has is a link to sqlalche.me, once per entry that has it."""
    expected = sorted(
        ERROR_CODE_URL.format(code=code) for group in site_index() for e in group.entries.values() for code in e.codes
    )
    links = sorted(link for link in Anchors(article(built)).links if link.startswith("https://sqlalche.me/"))
    assert expected == links
    assert "https://sqlalche.me/e/21/gkpj" in links


def test_the_errors_page_is_left_out_of_search(built: Path) -> None:
    """It holds every message: in the search index it would come before the pages that fix them."""
    data = search_index(built)
    assert ([], "") == (indexed_words(data, "errors"), data["titles"][data["docnames"].index("errors")])


# --- Each message in the index, at the sections that show it ---------------------------------------


def test_each_message_is_indexed_under_its_class_at_the_sections_that_show_it() -> None:
    """``Class; message`` as the Errors page lists it, once for each section that shows it (two
    series' copies are one); a message elided entirely is indexed by its class alone."""
    docname, page = raising(
        "transactions/a.md",
        "keyword",
        [UNIQUE.format(table="keyword", series="21"), UNIQUE.format(table="keyword", series="20"), "KeyError: ...\n"],
    )
    sections = [{"line": 1, "id": ""}, {"line": 12, "id": "second"}]  # the examples are at lines 10, 14 and 18
    message = "IntegrityError; (sqlite3.IntegrityError) UNIQUE constraint failed: …"
    assert {"": [message], "second": [message, "KeyError"]} == index_entries(rows_of(docname, page), sections)


def test_the_search_index_holds_each_message_at_the_sections_that_show_it(built: Path) -> None:
    """Sphinx's search index lists each message (lowercased, as Sphinx keeps index entries) and its
    class, as main entries, on each page that shows it, at sections the page has: the site's
    search finds a section whose message a pasted error holds."""
    data = search_index(built)
    listed = {
        (entry, data["docnames"][file], anchor)
        for entry, found in data["indexentries"].items()
        for file, anchor, main in found
        if main
    }
    expected = set()
    for group in site_index():
        for entry in group.entries.values():
            for docname in {o.docname for o in entry.occurrences}:
                expected.add((short(group.cls).lower(), docname))
                if re.search(r"\w", entry.message):
                    expected.add((entry.message.lower(), docname))
    assert set() == expected - {(entry, docname) for entry, docname, _ in listed}
    ids = {docname: Anchors((built / f"{docname}.html").read_text(encoding="utf-8")).ids for _, docname, _ in listed}
    assert [] == [(docname, anchor) for _, docname, anchor in listed if anchor and anchor not in ids[docname]]


# --- A build after a page changes ----------------------------------------------------------------

MINI_CONF = """\
extensions = ["myst_parser", "cookbook_site.errors"]
myst_enable_extensions = ["colon_fence"]
"""
MINI_PAGE = """\
# A question

## The surprise

```python
>>> raise {error}
Traceback (most recent call last):
...
{shown}
```

## Fixes

Do something else.
"""


def mini_build(src: Path) -> str:
    """Build a small site of its own into ``src/_out`` (again), and return its Errors page's text."""
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", str(src), str(src / "_out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert 0 == done.returncode, done.stdout
    return (src / "_out" / ERRORS_PAGE).read_text(encoding="utf-8")


def write(path: Path, text: str) -> None:
    """Write a source (written after a build, it is newer than what that build read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_errors_page_follows_the_pages_on_a_build_that_reads_only_what_changed(tmp_path: Path) -> None:
    """A page's exception changes, a page is added, a page is removed: the Errors page, unchanged
    itself, is read again and lists what the pages show now, linked to their sections and fixes."""
    (tmp_path / "conf.py").write_text(MINI_CONF)
    write(tmp_path / "index.md", "# Home\n\n```{toctree}\nerrors\ntransactions/a\n```\n")
    write(tmp_path / "errors.md", "# Errors\n\n```{error-index}\n```\n")
    write(tmp_path / "transactions" / "a.md", MINI_PAGE.format(error="KeyError('first')", shown="KeyError: 'first'"))
    first = Anchors(mini_build(tmp_path))
    assert (["KeyError", "'first'"], ["transactions/a.html#the-surprise", "transactions/a.html#fixes"]) == (
        first.code,
        [link for link in first.links if link.startswith("transactions/") and "#" in link],
    )

    write(tmp_path / "transactions" / "a.md", MINI_PAGE.format(error="TypeError('second')", shown="TypeError: second"))
    second = Anchors(mini_build(tmp_path))
    assert (["TypeError", "second"], True, False) == (second.code, "typeerror" in second.ids, "keyerror" in second.ids)

    write(tmp_path / "querying" / "b.md", MINI_PAGE.format(error="ValueError('third')", shown="ValueError: third"))
    write(tmp_path / "index.md", "# Home\n\n```{toctree}\nerrors\ntransactions/a\nquerying/b\n```\n")
    third = Anchors(mini_build(tmp_path))
    assert (["TypeError", "second", "ValueError", "third"], True) == (
        third.code,
        "querying/b.html#the-surprise" in third.links,
    )

    (tmp_path / "querying" / "b.md").unlink()
    write(tmp_path / "index.md", "# Home\n\n```{toctree}\nerrors\ntransactions/a\n```\n")
    assert ["TypeError", "second"] == Anchors(mini_build(tmp_path)).code
