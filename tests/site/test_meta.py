"""What search engines, link previews and assistants read of the site: each page's description (its
short answer) and Open Graph tags, the canonical URL, sitemap.xml and llms.txt.

The site is built once, offline, as Read the Docs builds it: with ``READTHEDOCS_CANONICAL_URL`` set.
"""

from __future__ import annotations

import re
import runpy
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest

from cookbook_site import page as page_model
from tests.browser.site import DOCS, ROOT, build_site, html_name

#: The canonical URL the test build is given, as Read the Docs gives it (language, version, "/").
BASE = "https://cookbook.example/en/latest/"
#: Where a build outside Read the Docs says the site is: where `make serve` serves it.
LOCAL_BASE = "http://127.0.0.1:8000/"
#: conf.py's ``ogp_description_length``.
DESCRIPTION_LIMIT = 200

PAGES = page_model.pages(DOCS)
RECIPES = page_model.recipe_pages(DOCS)
#: Void elements: a start tag with no end tag.
VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())


class BuiltPage(HTMLParser):
    """What these tests read of a built page: its ``<meta>`` tags, its canonical link, the
    paragraphs directly under its title, and the links of the toctrees in its body."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.canonical: str | None = None
        #: (classes, text) of each <p> directly in the article's first <section>.
        self.paragraphs: list[tuple[list[str], str]] = []
        self.toctree_links: list[str] = []
        self._open: list[str] = []
        self._in_article = False
        self._section: int | None = None
        self._section_seen = False
        self._paragraph: tuple[list[str], list[str]] | None = None
        self._toctree: int | None = None
        self.feed(path.read_text(encoding="utf-8"))
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        classes = attributes.get("class", "").split()
        if tag == "meta" and (key := attributes.get("name") or attributes.get("property")):
            self.meta[key] = attributes.get("content", "")
        if tag == "link" and attributes.get("rel") == "canonical":
            self.canonical = attributes.get("href")
        if tag in VOID:
            return
        self._open.append(tag)
        depth = len(self._open)
        if tag == "article":
            self._in_article = True
        elif tag == "section" and self._in_article and not self._section_seen:
            self._section, self._section_seen = depth, True
        elif tag == "p" and self._section is not None and depth == self._section + 1:
            self._paragraph = (classes, [])
        elif tag == "div" and "toctree-wrapper" in classes:
            self._toctree = depth
        elif tag == "a" and self._toctree is not None and "#" not in attributes.get("href", "#"):
            self.toctree_links.append(attributes["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        while self._open:
            depth = len(self._open)
            closed = self._open.pop()
            if closed == "p" and self._paragraph is not None and self._section is not None:
                if depth == self._section + 1:
                    classes, text = self._paragraph
                    self.paragraphs.append((classes, " ".join("".join(text).split())))
                    self._paragraph = None
            if depth == self._section:
                self._section = None
            if depth == self._toctree:
                self._toctree = None
            if closed == tag:
                return

    def handle_data(self, data: str) -> None:
        if self._paragraph is not None:
            self._paragraph[1].append(data)

    @property
    def short_answer(self) -> str:
        """The first paragraph under the title that is neither the verified-on line nor the download link."""
        return next(text for classes, text in self.paragraphs if not {"verified-on", "recipe-download"} & set(classes))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once into a temporary folder, with Read the Docs' canonical URL."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("READTHEDOCS_CANONICAL_URL", BASE)
        return build_site(tmp_path_factory.mktemp("meta") / "html")


@pytest.fixture(scope="module")
def built(site: Path) -> dict[str, BuiltPage]:
    """Every page as built, by its HTML name."""
    return {html_name(source): BuiltPage(site / html_name(source)) for source in PAGES}


def llms_entries(site: Path) -> list[tuple[str, str]]:
    """(URL, text after the colon) of each page entry in llms.txt, in order."""
    text = (site / "llms.txt").read_text(encoding="utf-8")
    return [
        (found.group(1), found.group(2))
        for found in re.finditer(r"^- \[.*?\]\((\S+?)\)(?:: (.*))?$", text, re.M)
        if found.group(1).endswith(".html")
    ]


def unmarkdown(text: str) -> str:
    """A line of llms.txt as text: inline code without its backticks."""
    return re.sub(r"(?<!`)(`+)(?!`) ?(.+?) ?(?<!`)\1(?!`)", r"\2", text)


def page_id(source: Path) -> str:
    return source.relative_to(DOCS).with_suffix("").as_posix()


@pytest.mark.parametrize("source", RECIPES, ids=page_id)
def test_a_recipe_page_is_described_by_its_short_answer(source: Path, built: dict[str, BuiltPage]) -> None:
    """A recipe page's meta description is the start of its short answer, as the page shows it."""
    page = built[html_name(source)]
    description = page.meta.get("description", "").removesuffix("…")
    assert description, f"{page_id(source)} has no description"
    assert page.short_answer[: len(description)] == description


def test_descriptions_are_cut_short_on_a_word_boundary(built: dict[str, BuiltPage]) -> None:
    """No description is longer than the limit, and none stops in the middle of a word."""
    bad = []
    for name, page in built.items():
        description = page.meta["description"]
        cut = description.removesuffix("…")
        rest = page.short_answer[len(cut) :]
        if len(description) > DESCRIPTION_LIMIT or (rest[:1].isalnum() and cut[-1:].isalnum()):
            bad.append(f"{name}: {description!r}")
    assert [] == bad


def test_og_description_is_the_meta_description(built: dict[str, BuiltPage]) -> None:
    """Link previews and search results show the same text."""
    assert {name: page.meta.get("description") for name, page in built.items()} == {
        name: page.meta.get("og:description") for name, page in built.items()
    }


def test_every_page_has_its_open_graph_tags(built: dict[str, BuiltPage]) -> None:
    """og:title, og:description, og:url and og:type are on every page."""
    tags = {"og:title", "og:description", "og:url", "og:type"}
    assert {} == {name: sorted(tags - page.meta.keys()) for name, page in built.items() if tags - page.meta.keys()}


def test_canonical_url_and_og_url_come_from_read_the_docs(built: dict[str, BuiltPage]) -> None:
    """Each page's canonical link and og:url are its address under Read the Docs' canonical URL."""
    assert {name: (BASE + name, BASE + name) for name in built} == {
        name: (page.canonical, page.meta.get("og:url")) for name, page in built.items()
    }


def test_sitemap_lists_every_page_and_nothing_else(site: Path) -> None:
    """Every page once, at its canonical URL; no search, index or 404 page."""
    tree = ElementTree.parse(site / "sitemap.xml")
    locs = [loc.text or "" for loc in tree.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")]
    assert sorted(BASE + html_name(source) for source in PAGES) == sorted(locs)


def test_llms_txt_opens_with_the_title_and_a_one_line_summary(site: Path) -> None:
    """The llms.txt header: the site's title, then its front page's paragraph as a quoted line."""
    lines = (site / "llms.txt").read_text(encoding="utf-8").split("\n")
    index = BuiltPage(site / "index.html")
    assert ["# SQLAlchemy ORM Cookbook", "", f"> {index.short_answer}", ""] == [
        *lines[:2],
        unmarkdown(lines[2]),
        lines[3],
    ]


def test_llms_txt_lists_every_page_with_its_short_answer(site: Path, built: dict[str, BuiltPage]) -> None:
    """One entry per page: its canonical URL, then its whole short answer."""
    assert sorted((BASE + name, page.short_answer) for name, page in built.items()) == sorted(
        (url, unmarkdown(text)) for url, text in llms_entries(site)
    )


def test_llms_txt_follows_the_toctree(site: Path) -> None:
    """The front page first, then the pages in the order of the front page's toctrees."""
    index = BuiltPage(site / "index.html")
    assert [BASE + "index.html", *(BASE + link for link in index.toctree_links)] == [
        url for url, _ in llms_entries(site)
    ]


@pytest.mark.parametrize(("canonical", "expected"), [(None, LOCAL_BASE), (BASE, BASE)], ids=["local", "read-the-docs"])
def test_html_baseurl(canonical: str | None, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """conf.py takes the site's address from Read the Docs' environment, else `make serve`'s address."""
    if canonical is None:
        monkeypatch.delenv("READTHEDOCS_CANONICAL_URL", raising=False)
    else:
        monkeypatch.setenv("READTHEDOCS_CANONICAL_URL", canonical)
    assert expected == runpy.run_path(str(ROOT / "conf.py"))["html_baseurl"]
