"""The live preview: from saving a page to the browser showing the edit, as ``make serve`` runs it.

The serve command is read from the Makefile's ``serve`` recipe (so this measures what authors
run), started on a copy of the site (:class:`tests.browser.site.SiteCopy`) and a free port; a
headless Chromium opens a recipe page; each round adds a sentence to that page's source and
times until the page, reloaded by the preview, shows it.  For comparison the same is measured
with plain sphinx-autobuild, which starts a new Python for every rebuild.  Target (issue 19):
under 1 s.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from tests.browser.site import SiteCopy, chromium, missing, serve_recipe, serving

PAGE = "transactions/delete-reinsert"
ROUNDS = 5


def measure(module: str | None) -> list[float]:
    """Seconds from each save to the page showing it, over ROUNDS edits."""
    with tempfile.TemporaryDirectory(prefix="cookbook-preview-bench-") as folder:
        site = SiteCopy(Path(folder))
        with serving(site, module) as (base, _), chromium() as (_, browser):
            times = []
            tab = browser.new_page()
            tab.goto(f"{base}{PAGE}.html")
            for round_ in range(ROUNDS):
                time.sleep(1.5)  # the watcher settles; the previous reload is done
                mark = f"Preview mark {round_} {time.time_ns()}."
                started = time.perf_counter()
                site.edit(PAGE, "\n## ", f"\n{mark}\n\n## ")
                tab.wait_for_function(
                    "mark => document.body !== null && document.body.innerText.includes(mark)",
                    arg=mark,
                    polling=10,
                    timeout=60_000,
                )
                times.append(time.perf_counter() - started)
            return times


def main() -> None:
    reason = missing()
    if reason:
        print(f"   live preview not measured: {reason}")
        return
    words = serve_recipe()
    served_by = words[words.index("-m") + 1]
    for module, label in ((None, f"make serve ({served_by})"), ("sphinx_autobuild", "plain sphinx-autobuild")):
        if module == served_by:
            continue
        times = measure(module)
        print(
            f"   {label}: an edit to {PAGE}.md shows in the browser after "
            f"{min(times):.2f} s best, {statistics.median(times):.2f} s median of {len(times)} "
            f"({', '.join(f'{t:.2f}' for t in times)}) (target < 1 s)",
            flush=True,
        )
