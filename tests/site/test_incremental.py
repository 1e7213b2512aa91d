"""An edit rebuilds what it changes and no more: what the live preview's speed rests on.

The site is copied into a temporary project (its pages, conf.py, the recipe library and the
Pyodide assets as links), built once, then edited and built again as ``make serve`` builds it;
each test reads which pages Sphinx read and wrote again, and checks the output says the new thing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cookbook_site import page as page_model
from cookbook_site.verified import RECORDS
from tests.browser.site import SiteCopy

#: A recipe page that shows exceptions: the page the tests edit.
PAGE = "transactions/pending-rollback"
#: The ANSI codes Sphinx may write around its progress lines (erase line, colours).
ANSI_CODE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def build(project: SiteCopy) -> tuple[list[str], list[str]]:
    """Build as the live preview does; the pages Sphinx read, and the pages it wrote."""
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-n", "-c", ".", "docs", str(project.out)],
        cwd=project.folder,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Where Sphinx takes the terminal for one that shows colour (``CI`` set, as CI sets it), it
    # writes its progress on one line: each step after an erase-line code, ended by a carriage return.
    status = ANSI_CODE.sub("", done.stdout).replace("\r", "\n")
    read = re.findall(r"^reading sources\.\.\. \[[ \d]+%\] (\S+)", status, re.M)
    written = re.findall(r"^writing output\.\.\. \[[ \d]+%\] (\S+)", status, re.M)
    return read, written


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteCopy]:
    project = SiteCopy(tmp_path_factory.mktemp("incremental"))
    build(project)
    yield project


def test_an_edit_to_prose_reads_and_writes_that_page_alone(built: SiteCopy) -> None:
    """A new sentence: that page is read again; written with it, only the front page, whose
    navigation lists every page (the Errors page is left as it is)."""
    built.edit(PAGE, "\n## ", "\nA sentence the edit adds.\n\n## ")
    read, written = build(built)
    assert ([PAGE], {PAGE, "index"}) == (read, set(written))
    assert "A sentence the edit adds." in built.html(PAGE)


def test_a_changed_exception_reads_the_errors_page_again_after_the_page(built: SiteCopy) -> None:
    """A message the page shows changes: the Errors page is read again, after the page, and lists it."""
    shown = next(e.exc_msg for e in page_model.read(built.source(PAGE)).examples if e.exc_msg)
    first = shown.splitlines()[0]
    built.edit(PAGE, first, first + " Zanzibar")
    read, _ = build(built)
    assert [PAGE, "errors"] == read
    assert "Zanzibar" in built.html("errors")


def test_a_renamed_section_writes_the_errors_page_again(built: SiteCopy) -> None:
    """The Errors page names the sections that show each message: a renamed one is written anew
    (the Errors page is not read again: its messages are the same)."""
    model = page_model.read(built.source(PAGE))
    line = next(e for e in model.examples if e.exc_msg).line
    heading = [h for h in built.source(PAGE).read_text(encoding="utf-8").splitlines()[:line] if h.startswith("## ")][-1]
    built.edit(PAGE, heading + "\n", heading + " (renamed)\n")
    read, written = build(built)
    assert [PAGE] == read
    assert "errors" in written
    assert "(renamed)" in built.html("errors")


def test_a_new_test_record_reads_again_the_pages_whose_line_it_changes(built: SiteCopy) -> None:
    """A record of a test run appears: each recipe page's line under its title says what it
    ran on, so they are read again; a second build with the same record reads nothing."""
    record = built.folder / RECORDS.format(series="2.0")
    record.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "runtime": {"SQLAlchemy": "2.0.99", "Python": "3.11.0"},
        "backends": {"sqlite": {"version": "3.40.0", "passed": True}},
        "pages": {PAGE: {"sqlite": True, "sqlite-async": True}},
    }
    record.write_text(json.dumps(data), encoding="utf-8")
    read, _ = build(built)
    assert PAGE in read
    assert "2.0.99" in built.html(PAGE)
    assert [] == build(built)[0]


def test_the_sitemap_still_lists_every_page(built: SiteCopy) -> None:
    """After incremental builds, sitemap.xml lists every page, not only those the last build wrote."""
    sitemap = (built.out / "sitemap.xml").read_text(encoding="utf-8")
    assert len(page_model.pages(built.docs)) == sitemap.count("<loc>")
