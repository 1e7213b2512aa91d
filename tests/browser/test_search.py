"""The site's search as readers use it, in a real (headless) Chromium, against the built site.

Readers arrive with a question, a symptom or an error message. Each query here must list the
page that answers it first (a page's title, the seeds' wording) or in the top three (a reader's
own words, an error). The errors are not typed here: one query per exception class, one per
SQLAlchemy error code and one per message, pasted as a reader pastes a traceback's last line, are
made from the Errors page's own index (cookbook_site.errors) of what the pages show, so a page that
starts showing an error adds its queries. The 404 page's search box is tested here too.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import pytest

from cookbook_site import errors
from cookbook_site import page as page_model
from tests.browser.site import DOCS, Server, Watch, html_name, indexed_words, recipe_sources, search_index

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

RECIPES = recipe_sources()

Open = Callable[..., Watch]


def page_id(path: Path) -> str:
    return path.relative_to(DOCS).as_posix()


def recipe(name: str) -> Path | None:
    """A recipe page's source by its path under docs/ (without .md), if it exists yet."""
    path = DOCS / f"{name}.md"
    return path if path.exists() else None


def _search(tab: Watch, query: str) -> list[str]:
    """The pages Sphinx's search page lists for a query, best first (paths relative to the site),
    once it has fetched each page's text for its summary (the next search would cut that short)."""
    tab.page.goto(f"{tab.server.url}search.html?q={quote(query)}", wait_until="load")
    found = _listed(tab.page)
    tab.settle()
    return found


def _listed(page: Page) -> list[str]:
    """The pages the search page lists, once its search has finished."""
    page.wait_for_function(
        "() => { const s = document.querySelector('#search-results .search-summary');"
        " return s && /finished|did not match/.test(s.textContent); }"
    )
    hrefs: list[str] = page.locator("#search-results ul.search > li > a").evaluate_all(
        "links => links.map(a => a.href)"
    )
    return [urlsplit(h).path.lstrip("/") for h in hrefs]


def built_title(built: Path, name: str) -> str:
    """A built page's title as a reader reads it."""
    heading = re.search(r"<h1>(.*?)</h1>", (built / name).read_text(), re.S)
    assert heading, f"{name} has no title"
    text = re.sub(r'<a class="headerlink".*?</a>', "", heading.group(1))
    return html.unescape(re.sub(r"<[^>]+>", "", text)).strip()


def assert_clean(watch: Watch) -> None:
    assert [] == watch.problems


@pytest.fixture(scope="module")
def shared_tab(browser: Browser, server: Server) -> Iterator[Watch]:
    """One tab for every query of this module (a fresh profile for each would triple the time):
    the search page keeps nothing from one query to the next that changes what it lists."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    context.set_default_timeout(10_000)
    yield Watch(context.new_page(), server)
    context.close()


@pytest.fixture
def tab(shared_tab: Watch) -> Watch:
    """The shared tab, with no problem left from an earlier test."""
    shared_tab.problems.clear()
    return shared_tab


# --- A page's title, the seeds' wording --------------------------------------------------------


@pytest.mark.parametrize("source", RECIPES, ids=page_id)
def test_search_for_the_question_finds_its_page_first(source: Path, tab: Watch, built: Path) -> None:
    """A reader who types a page's question finds that page first."""
    question = built_title(built, html_name(source))
    found = _search(tab, question)
    assert found[:1] == [html_name(source)], f"searching {question!r} listed {found[:3]}"
    assert_clean(tab)


# Each entry of the seeds, as its heading is worded there (straight quotes, as a reader types).
SEED_QUESTIONS = [
    ("Deleting and re-inserting a record in SQLAlchemy in the same transaction", "transactions/delete-reinsert"),
    (
        "I'm re-loading data with my Session but it isn't seeing changes that I committed elsewhere",
        "transactions/stale-reads",
    ),
    (
        "This Session's transaction has been rolled back due to a previous exception during flush.",
        "transactions/pending-rollback",
    ),
    ("But why does flush() insist on issuing a ROLLBACK?", "transactions/why-flush-rolls-back"),
    (
        "But why isn't the one automatic call to ROLLBACK enough? Why must I ROLLBACK again?",
        "transactions/why-rollback-again",
    ),
    ("How do I make a Query that always adds a certain filter to every query?", "querying/always-filtered-query"),
    (
        "I've created a mapping against an Outer Join, and while the query returns rows, no objects are returned. Why not?",
        "querying/outer-join-mapping",
    ),
    (
        "I'm using joinedload() or lazy=False to create a JOIN/OUTER JOIN and SQLAlchemy is not constructing the correct query when I try to add a WHERE, ORDER BY, LIMIT, etc.",
        "querying/joinedload-filtering",
    ),
    ("Query has no __len__(), why not?", "querying/query-has-no-len"),
    ("How Do I use Textual SQL with ORM Queries?", "querying/textual-sql"),
    (
        "I'm calling Session.delete(myobject) and it isn't removed from the parent collection!",
        "relationships/delete-from-collection",
    ),
    ("why isn't my __init__() called when I load objects?", "relationships/init-not-called"),
    ("how do I use ON DELETE CASCADE with SA's ORM?", "relationships/on-delete-cascade"),
    (
        'I set the "foo_id" attribute on my instance to "7", but the "foo" attribute is still None - shouldn\'t it have loaded Foo with id #7?',
        "relationships/set-foreign-key-load-relationship",
    ),
    (
        "Is there a way to automagically have only unique keywords (or other kinds of objects) without doing a query for the keyword and getting a reference to the row containing that keyword?",
        "relationships/unique-object",
    ),
]


@pytest.mark.parametrize(("question", "target"), SEED_QUESTIONS, ids=[t for _, t in SEED_QUESTIONS])
def test_search_for_the_seed_wording_finds_its_page_first(question: str, target: str, tab: Watch) -> None:
    """A reader who pastes the FAQ's (or the blog's) own question lands on its page."""
    assert recipe(target) is not None, f"docs/{target}.md is missing"
    found = _search(tab, question)
    assert found[:1] == [f"{target}.html"], f"searching {question!r} listed {found[:3]}"
    assert_clean(tab)


# --- A reader's own words: symptoms, tasks, errors as typed -------------------------------------

READERS_WORDS = [
    ("UNIQUE constraint failed delete insert same transaction", "transactions/delete-reinsert"),
    ("duplicate key value violates unique constraint", "transactions/delete-reinsert"),
    ("PendingRollbackError", "transactions/pending-rollback"),
    (
        "current transaction is aborted, commands ignored until end of transaction block",
        "transactions/why-flush-rolls-back",
    ),
    ("database is locked", "transactions/sqlite-transactions"),
    ("session does not see changes from another process", "transactions/stale-reads"),
    ("soft delete", "querying/always-filtered-query"),
    ("multi-tenant filter by tenant", "querying/filter-per-tenant"),
    ("count returns wrong number", "querying/count-disagrees"),
    ("count is too high", "querying/count-disagrees"),
    ("raw SQL to ORM objects", "querying/textual-sql"),
    ("object still in collection after delete", "relationships/delete-from-collection"),
    ("children not deleted with parent", "relationships/foreign-keys-not-enforced"),
    ("on delete cascade passive_deletes", "relationships/on-delete-cascade"),
    ("constructor not called when loading from database", "relationships/init-not-called"),
    ("relationship not updated after changing foreign key", "relationships/set-foreign-key-load-relationship"),
    # The FAQ entry of that name, which has a page of its own.
    ("Attribute loading for non-persistent objects", "relationships/non-persistent-loading"),
    ("relationship is None before flush", "relationships/non-persistent-loading"),
    # Pasted whole, as a traceback's last line reads: addresses, links and the reader's own names included.
    (
        "sqlalchemy.exc.MissingGreenlet: greenlet_spawn has not been called; can't call await_only() here. "
        "Was IO attempted in an unexpected place? (Background on this error at: https://sqlalche.me/e/20/xd2s)",
        "relationships/missing-greenlet",
    ),
    (
        "sqlalchemy.exc.PendingRollbackError: This Session's transaction has been rolled back due to a previous "
        "exception during flush. To begin a new transaction with this Session, first issue Session.rollback(). "
        "Original exception was: (psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "
        '"customer_orders_pkey_7f3a"',
        "transactions/pending-rollback",
    ),
    # The lifecycle pages: the error's first line as pasted, and the symptom.
    (
        "sqlalchemy.exc.TimeoutError: QueuePool limit of size 5 overflow 10 reached, connection timed out, "
        "timeout 30.00 (Background on this error at: https://sqlalche.me/e/20/3o7r)",
        "applications/pool-exhausted",
    ),
    ("Can't reconnect until invalid transaction is rolled back", "applications/pool-exhausted"),
    ("connection pool exhausted pool_pre_ping", "applications/pool-exhausted"),
    (
        "sqlalchemy.orm.exc.DetachedInstanceError: Instance <User at 0x7f3a2c1e5d90> is not bound to a Session; "
        "attribute refresh operation cannot proceed (Background on this error at: https://sqlalche.me/e/20/bhk3)",
        "relationships/detached-instance",
    ),
    (
        "Parent instance <Customer at 0x7f0c9e2b1a10> is not bound to a Session; "
        "lazy load operation of attribute 'orders' cannot proceed",
        "relationships/detached-instance",
    ),
    ("pytest fixture rollback after each test join_transaction_mode", "applications/tests-roll-back"),
    ("FastAPI session per request dependency yield", "applications/fastapi-session"),
    ("PendingRollbackError FastAPI next request fails", "applications/fastapi-session"),
    ("Flask SQLAlchemy session per request teardown_appcontext", "applications/flask-session"),
    ("flask-sqlalchemy db.session rollback after error", "applications/flask-session"),
    # The queries pages.
    ("My Query does not return the same number of objects as query.count() tells me", "querying/count-disagrees"),
    ("count() returns more than all()", "querying/count-disagrees"),
    ("N+1 queries", "querying/n-plus-one"),
    ("one query per object in a loop", "querying/n-plus-one"),
    (
        "sqlalchemy.exc.InvalidRequestError: The unique() method must be invoked on this Result, as it contains "
        "results that include joined eager loads against collections",
        "querying/n-plus-one",
    ),
    ("'Book.author' is not available due to lazy='raise'", "querying/n-plus-one"),
    ("get or create", "relationships/unique-object"),
    ("upsert", "querying/upsert"),
    ("insert or update on_conflict_do_update", "querying/upsert"),
    ("ON CONFLICT DO UPDATE command cannot affect row a second time", "querying/upsert"),
    ("session.merge is not an upsert IntegrityError", "querying/upsert"),
    # Symptoms, as readers describe them before they know the page's name.
    ("rows left behind after tests commit", "applications/tests-roll-back"),
    ("my loop sends a query per object", "querying/n-plus-one"),
    ("DetachedInstanceError after commit", "relationships/detached-instance"),
    ("session per request FastAPI", "applications/fastapi-session"),
    ("too many connections, requests hang waiting for a connection", "applications/pool-exhausted"),
    ("one session shared between threads", "transactions/concurrent-session"),
    ("asyncio.gather with one AsyncSession", "transactions/concurrent-session"),
    ("bulk update does not change my objects", "querying/bulk-statements-stale"),
    ("objects stale after update() statement synchronize_session", "querying/bulk-statements-stale"),
    ("two tables that reference each other circular dependency", "relationships/post-update"),
    ("joinedload with limit returns too few children", "querying/joinedload-filtering"),
    ("len() of a query", "querying/query-has-no-len"),
    ("foreign keys not enforced in SQLite", "relationships/foreign-keys-not-enforced"),
    ("find every object related to an object", "relationships/walk-related-objects"),
    ("expire_on_commit=False", "relationships/detached-instance"),
    ("greenlet_spawn has not been called", "relationships/missing-greenlet"),
    ("SQLite WAL mode", "transactions/sqlite-transactions"),
    ("isolation level READ COMMITTED sees old data", "transactions/stale-reads"),
]


@pytest.mark.parametrize(("query", "target"), READERS_WORDS, ids=[q for q, _ in READERS_WORDS])
def test_search_in_a_readers_words(query: str, target: str, tab: Watch) -> None:
    """What a reader types for the error or the symptom, or the usual name of the task, finds
    the page in the top three."""
    if recipe(target) is None:
        pytest.skip(f"docs/{target}.md does not exist yet")
    found = _search(tab, query)
    assert f"{target}.html" in found[:3], f"searching {query!r} listed {found[:3]}"
    assert_clean(tab)


# --- Every error the pages show, as a reader brings it ------------------------------------------

#: What a reader's own traceback has where the Errors page elides a value: the object address of
#: a repr, the class of one, and (for a table, column, constraint or value) a name no page uses.
MADE_UP = (
    ("0x" + errors.ELIDED, "0x7f3a2c1e5d90"),
    ("<" + errors.ELIDED + " at ", "<Customer at "),
    (errors.ELIDED, "customer_orders"),
)


def pasted(cls: str, message: str) -> str:
    """An entry of the Errors page as a traceback's last line reads: the class and the message,
    with made-up values where the entry elides them. An entry listed under the class a wrapper
    wraps already starts with the wrapper's class, as the traceback does."""
    line = message if message.partition(": ")[2].startswith(f"({cls}) ") else f"{cls}: {message}"
    for elided, value in MADE_UP:
        line = line.replace(elided, value)
    return line


#: Every exception the recipe pages show, grouped by class, as the Errors page lists them.
GROUPS = errors.index((docname, page_model.read(path)) for docname, path in errors.recipe_pages(DOCS))


def error_queries(groups: list[errors.Group]) -> list[tuple[str, frozenset[str]]]:
    """Each exception class's name alone, each SQLAlchemy error code alone, and each message
    pasted: each with the pages that show it (one of which must be in the top three). A message
    the pages elide entirely (``KeyError: '…'``) says nothing a search could use: its class does."""
    queries: dict[str, set[str]] = {}
    codes: dict[str, set[str]] = {}
    for group in groups:
        queries.setdefault(errors.short(group.cls), set()).update(errors.pages_of([group]))
        for entry in group.entries.values():
            pages = {occurrence.docname for occurrence in entry.occurrences}
            for code in entry.codes:
                codes.setdefault(code, set()).update(pages)
            if re.search(r"\w", entry.message):
                queries.setdefault(pasted(group.cls, entry.message), set()).update(pages)
    queries.update(sorted(codes.items()))
    return [(query, frozenset(pages)) for query, pages in queries.items()]


ERROR_QUERIES = error_queries(GROUPS)


def test_every_class_and_code_of_the_errors_page_is_searched_for() -> None:
    """The generated queries cover the Errors page: each class (24 when this was written) and each
    SQLAlchemy error code (13) is a query of its own."""
    names = {errors.short(group.cls) for group in GROUPS}
    codes = {code for group in GROUPS for entry in group.entries.values() for code in entry.codes}
    queries = {query for query, _ in ERROR_QUERIES}
    assert (set(), set()) == (names - queries, codes - queries)


@pytest.mark.parametrize(("query", "pages"), ERROR_QUERIES, ids=[q[:80] for q, _ in ERROR_QUERIES])
def test_search_for_an_error_finds_a_page_that_shows_it(query: str, pages: frozenset[str], tab: Watch) -> None:
    """The class alone, the error code alone, or the message pasted with the reader's own names,
    values and addresses in it: a page that shows that error is in the top three."""
    found = _search(tab, query)
    assert {f"{page}.html" for page in pages} & set(found[:3]), f"searching {query!r} listed {found[:3]}"
    assert_clean(tab)


def test_there_are_sixty_error_and_symptom_queries() -> None:
    """The issue's floor: at least 60 queries of errors and symptoms require the right page in the top three."""
    assert len(ERROR_QUERIES) + len(READERS_WORDS) >= 60


# --- What search leaves out ----------------------------------------------------------------------


def test_the_changelog_is_left_out_of_search(built: Path, tab: Watch) -> None:
    """The changelog names every page and every fix: it is kept out of the search index (its
    `nosearch` front matter), so it never crowds the pages that answer a question."""
    listed = indexed_words(search_index(built), "about/changelog")
    assert [] == listed, "words of the changelog in the search index"
    assert "Changelog" == built_title(built, "about/changelog.html")  # the page itself is still there
    found = _search(tab, "changelog")
    assert "about/changelog.html" not in found


def test_titles_are_short_in_the_sidebar_and_search_results(built: Path) -> None:
    """The sidebar and the search results show page titles: each is at most 60 characters, a
    title a reader can scan (the reader's question, in the FAQ's words, is quoted under it)."""
    names = [html_name(path) for path in page_model.pages(DOCS)]
    long = {name: title for name in names if len(title := built_title(built, name)) > 60}
    assert {} == long


# --- The 404 page ---------------------------------------------------------------------------------

MISSING = "transactions/pending-rolback.html"


def test_the_404_page_offers_a_search_for_the_words_of_the_missing_path(watch: Open, server: Server) -> None:
    """A mistyped address gets a search box holding its words (not its folder's, nor its
    suffix); searching for them lists the page the reader meant."""
    tab = watch()
    response = tab.goto(MISSING)
    assert response is not None and 404 == response.status
    box = tab.page.locator("article form.notfound-search input[name=q]")
    assert "pending rolback" == box.input_value()
    box.press("Enter")
    tab.page.wait_for_url(f"{server.url}search.html?q=pending+rolback")
    assert "transactions/pending-rollback.html" in _listed(tab.page)[:3]
    tab.settle()
    expected = f"HTTP 404: {server.url}{MISSING}"
    others = [p for p in tab.problems if p != expected and not p.startswith("console error: Failed to load resource")]
    assert ([expected], []) == ([p for p in tab.problems if p == expected], others)


def test_the_404_page_search_works_without_javascript(browser: Browser, server: Server) -> None:
    """Without JavaScript the box is empty, and it is still a form that leads to the search page."""
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{server.url}{MISSING}")
        box = page.locator("article form.notfound-search input[name=q]")
        assert "" == box.input_value()
        box.fill("pending rollback")
        box.press("Enter")
        page.wait_for_url(f"{server.url}search.html?q=pending+rollback")
    finally:
        context.close()
