"""Guards on the pages themselves: nothing on a page escapes the test run unnoticed."""

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sybil import Document

from cookbook_site import page as page_model
from tests.harness.pages import page_parsers

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = page_model.pages(DOCS)
# Recipe pages answer a question with code: each must yield examples.
RECIPES = page_model.recipe_pages(DOCS)

FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$", re.M)
PYTHON_LOOKALIKE = re.compile(
    r"^\{?(code-block\}|code\}|sourcecode\})?\s*(py|py3|pycon|python\d?|ipython\d?|pyodide)$", re.I
)
BARE_SKIP = re.compile(r"^[ \t]*%[ \t]*skip:[ \t]*(next|start)[ \t]*$", re.M)


def page_id(path: Path) -> str:
    return path.relative_to(DOCS).as_posix()


def lines_of(text: str, pattern: re.Pattern[str], keep: Callable[[re.Match[str]], bool]) -> list[str]:
    return [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0).strip()}" for m in pattern.finditer(text) if keep(m)
    ]


def python_fences(text: str) -> list[tuple[int, int]]:
    """(start, end) of every ```python fence, found by a plain scan (nested ones too, as Sybil does)."""
    fences = list(FENCE.finditer(text))
    spans = []
    for i, opening in enumerate(fences):
        if opening.group("info").strip() != "python":
            continue
        closing = next(
            (
                m
                for m in fences[i + 1 :]
                if m.group("fence")[0] == opening.group("fence")[0]
                and len(m.group("fence")) >= len(opening.group("fence"))
                and not m.group("info").strip()
            ),
            None,
        )
        spans.append((opening.start(), closing.end() if closing else len(text)))
    return spans


def test_there_are_recipe_pages() -> None:
    """The glob below would pass vacuously if the folders moved."""
    assert RECIPES, f"no recipe pages under {DOCS}/{{{','.join(page_model.RECIPE_FOLDERS)}}}"


@pytest.mark.parametrize("path", RECIPES, ids=page_id)
def test_recipe_page_yields_examples(path: Path) -> None:
    """A recipe page whose blocks stopped being collected would otherwise pass in silence."""
    document = Document.parse(str(path), *page_parsers("sqlite"))
    assert len(list(document.examples())) > 0, f"{page_id(path)} yields no examples"


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_every_python_fence_is_collected(path: Path) -> None:
    """Each ```python fence, found by a plain scan, is run by Sybil (at least one example)."""
    text = path.read_text()
    starts = [region.start for _, region in Document.parse(str(path), *page_parsers("sqlite")).regions]
    missed = [
        f"line {text.count(chr(10), 0, s) + 1}" for s, e in python_fences(text) if not any(s <= r < e for r in starts)
    ]
    assert [] == missed, f"{page_id(path)}: python fences Sybil does not run"


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_no_python_lookalike_fences(path: Path) -> None:
    """Sybil runs fences tagged exactly `python`; `py`, `pycon` or `Python` would be skipped silently."""
    text = path.read_text()
    odd = lines_of(
        text,
        FENCE,
        lambda m: m.group("info").strip() != "python" and PYTHON_LOOKALIKE.match(m.group("info").strip()) is not None,
    )
    assert [] == odd, f"{page_id(path)}: tag these fences `python` (or `text` if not code)"


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_skips_carry_a_reason(path: Path) -> None:
    """A skipped block must say why; the reason shows in the test report."""
    assert [] == lines_of(path.read_text(), BARE_SKIP, lambda m: True)


LABEL = re.compile(r"\A\((?P<label>[a-z0-9-]+)\)=\n")


@pytest.mark.parametrize("path", [p for p in PAGES if p.parent != DOCS and p.name != "changelog.md"], ids=page_id)
def test_label_is_named_after_the_file(path: Path) -> None:
    """A page's label is its kind and its file name (`recipe-delete-reinsert` for
    transactions/delete-reinsert.md), so a cross-reference names the page it links to."""
    kind = "recipe" if page_model.is_recipe(page_id(path).removesuffix(".md")) else path.parent.name
    found = LABEL.match(path.read_text())
    assert found is not None, f"{page_id(path)} does not start with a label"
    assert f"{kind}-{path.stem}" == found.group("label")


IMPORT = re.compile(r"^(?:>>> )?from sqlalchemy_cookbook(?:\.(?P<module>\w+))? import (?P<name>\w+)", re.M)
LIBRARY = DOCS.parent / "src" / "sqlalchemy_cookbook"


IMPORTERS = [p for p in RECIPES if IMPORT.search(p.read_text())]


def test_three_recipe_pages_import_the_library() -> None:
    """One page per recipe of the library; the test below would pass vacuously without them."""
    assert 3 == len(IMPORTERS)


@pytest.mark.parametrize("path", IMPORTERS, ids=page_id)
def test_a_library_import_says_how_to_get_it(path: Path) -> None:
    """Where a recipe page first imports the library, the text just before says how a reader gets
    it: `pip install .` from the repository, or the one module's download."""
    text = path.read_text()
    found = IMPORT.search(text)
    assert found is not None
    before = text[: found.start()].rsplit("\n\n", 3)[-3:]
    module = next(m.stem for m in LIBRARY.glob("*.py") if f"class {found.group('name')}" in m.read_text())
    assert any("pip install ." in part for part in before), f"{page_id(path)}: no `pip install .` before the import"
    download = f"<../../src/sqlalchemy_cookbook/{module}.py>"
    assert any(download in part for part in before), f"{page_id(path)}: no download of {module}.py before the import"


TITLE = re.compile(r"^# (?P<title>.+)$", re.M)


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_title_is_short(path: Path) -> None:
    """The sidebar and search results show a title a reader can scan: 60 characters at most
    (the reader's question, in the FAQ's wording, goes under it)."""
    text = path.read_text()
    included = re.search(r"```\{include\} (\S+)", text)
    if included is not None:  # the changelog page: its title is the included file's
        text = (path.parent / included.group(1)).read_text()
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)  # front matter's comments are not titles
    found = TITLE.search(text)
    assert found is not None, f"{page_id(path)} has no title"
    title = re.sub(r"`([^`]*)`", r"\1", found.group("title"))
    assert len(title) <= 60, f"{page_id(path)}: {len(title)} characters: {title}"


API_TABSET = re.compile(r"^(?P<fence>:{3,})\{tab-set\}\n:sync-group:[ \t]*api[ \t]*\n", re.M)


@pytest.mark.parametrize("path", [p for p in RECIPES if page_model.has_api_tabs(p.read_text())], ids=page_id)
def test_session_and_asyncsession_tabs_come_in_pairs(path: Path) -> None:
    """Each Session | AsyncSession tab-set has both tabs, Session first, and the AsyncSession tab
    holds an example that runs (a reader who picks it must see the page's answer for asyncio)."""
    text = path.read_text()
    page = page_model.read(path)
    problems = []
    for opening in API_TABSET.finditer(text):
        end = re.compile(rf"^{opening.group('fence')}[ \t]*$", re.M).search(text, opening.end())
        inside = text[opening.end() : end.start() if end else len(text)]
        syncs = re.findall(r"(?m)^:sync:[ \t]*(session|async-session)[ \t]*$", inside)
        line = text.count("\n", 0, opening.start()) + 1
        if syncs != ["session", "async-session"]:
            problems.append(f"line {line}: the tabs are {syncs}, not ['session', 'async-session']")
        start, stop = opening.start(), end.end() if end else len(text)
        if not any(e.api == "async" and e.skip is None and start <= e.start < stop for e in page.examples):
            problems.append(f"line {line}: the AsyncSession tab has no example that runs")
    assert [] == problems
