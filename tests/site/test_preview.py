"""``make serve``'s live preview (cookbook_site.preview): an edit is built and served, every time.

The preview runs as the Makefile runs it, on a copy of the site and a free port; the tests read
the served page over HTTP (the browser's reload is sphinx-autobuild's own).
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sphinx_autobuild.build import Builder

from cookbook_site import preview
from tests.browser.site import ROOT, SiteCopy, serve_recipe, serving

PAGE = "transactions/delete-reinsert"


def eventually(check: Callable[[], bool], timeout: float = 60) -> bool:
    """Whether ``check()`` comes true within ``timeout`` seconds (asked every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class Served:
    def __init__(self, site: SiteCopy, url: str, log: Path) -> None:
        self.site, self.url, self.log = site, url, log

    def has(self, text: str) -> bool:
        """Whether the served page holds ``text`` now."""
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                return text in response.read().decode("utf-8")
        except (http.client.IncompleteRead, OSError):
            return False  # read while Sphinx was writing the file: read it again

    def shows(self, text: str) -> bool:
        return eventually(lambda: self.has(text))

    def indexed(self, word: str) -> bool:
        index = self.site.out / "searchindex.js"
        return eventually(lambda: word in index.read_text(encoding="utf-8"))

    def logged(self, text: str) -> bool:
        return eventually(lambda: text in self.log.read_text())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    site = SiteCopy(tmp_path_factory.mktemp("preview"))
    with serving(site) as (base, log):
        yield Served(site, f"{base}{PAGE}.html", log)


def test_make_serve_runs_the_warm_preview() -> None:
    """The Makefile serves through cookbook_site.preview, with sphinx-autobuild's arguments."""
    words = serve_recipe()
    assert "cookbook_site.preview" == words[words.index("-m") + 1]


def test_each_edit_is_built_and_served(served: Served) -> None:
    """Three edits in a row, each built by a child of the warm process, each served."""
    for number in range(3):
        mark = f"Preview edit number {number}."
        served.site.edit(PAGE, "\n## ", f"\n{mark}\n\n## ")
        assert served.shows(mark), served.log.read_text()[-3000:]


def test_the_search_index_follows_the_edit_it_was_reloaded_before(served: Served) -> None:
    """The browser reloads once the pages are written; the child still writes the search index,
    and the next edit waits for it: a word each edit adds is in the index after it."""
    for word in ("quokkasearchmark", "wombatsearchmark"):
        served.site.edit(PAGE, "\n## ", f"\nThe preview indexes {word}.\n\n## ")
        assert served.shows(word), served.log.read_text()[-3000:]
        assert served.indexed(word), served.log.read_text()[-3000:]


def test_a_failure_after_the_pages_are_written_is_reported(capfd: pytest.CaptureFixture[str]) -> None:
    """The browser has already reloaded: a child that fails later (here, exit code 3) is still
    reported as sphinx-autobuild reports a failed build, and "Serving on" comes after it."""
    warm_side, builder_side = socket.socketpair()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child leaves by os._exit)
        os._exit(3)
    preview._finish(warm_side, child)
    builder = preview.WarmBuilder.__new__(preview.WarmBuilder)
    Builder.__init__(builder, [], url_host="127.0.0.1:1", pre_build_commands=[], post_build_commands=[])
    builder._ended(builder_side, builder_side.makefile("rb"))
    out = capfd.readouterr().out
    assert "Sphinx exited with exit code: 3" in out
    assert out.index("exit code: 3") < out.index("Serving on http://127.0.0.1:1")


def test_a_page_with_an_error_is_reported_and_the_next_edit_still_builds(served: Served) -> None:
    """A page Sphinx cannot read is reported in the log; the preview keeps serving, and the fix is built."""
    source = served.site.source(PAGE)
    before = source.read_text(encoding="utf-8")
    source.write_text(before + "\n```{no-such-directive}\n```\n", encoding="utf-8")
    assert served.logged("no-such-directive")
    source.write_text(before + "\nFixed again.\n", encoding="utf-8")
    assert served.shows("Fixed again."), served.log.read_text()[-3000:]


def test_the_projects_own_modules_are_imported_afresh() -> None:
    """A rebuild forgets the modules under the project (not the venv's): an edit to an extension
    or to the recipe library is built with the code as it is now."""
    import docutils

    import sqlalchemy_cookbook
    from cookbook_site import page

    assert preview._project_module(page)
    assert preview._project_module(sqlalchemy_cookbook)
    assert not preview._project_module(docutils)
    assert not preview._project_module(sys)
    assert ROOT == preview.PROJECT
