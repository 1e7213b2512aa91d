"""Page weight: what a reader's browser loads for each recipe page, before anything on demand.

Bytes are uncompressed bodies, as Chromium received them from the local server, on a cold cache,
by kind (HTML, CSS, JS, fonts, images, and anything else).  The largest page must stay under
250 KB; the browser tests (tests/browser) fail when one does not.
"""

from __future__ import annotations

from tests.browser.site import DOCS, KINDS, Watch, chromium, html_name, missing, recipe_sources, served_site

BUDGET = 250 * 1024


def main() -> None:
    reason = missing()
    if reason:
        print(f"   page weights not measured: {reason}")
        return
    columns = [*KINDS.values(), "other"]
    width = max([len("page")] + [len(s.relative_to(DOCS).with_suffix("").as_posix()) for s in recipe_sources()])
    print(f"   {'page':{width}} " + " ".join(f"{c:>7}" for c in columns) + f" {'total':>8}")
    totals = {}
    with served_site() as (_, server), chromium() as (_, browser):
        for source in recipe_sources():
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            tab = Watch(context.new_page(), server)
            tab.goto(html_name(source))
            weight = tab.weight()
            context.close()
            name = source.relative_to(DOCS).with_suffix("").as_posix()
            totals[name] = sum(weight.values())
            print(
                f"   {name:{width}} "
                + " ".join(f"{weight[c] / 1024:6.1f}K" for c in columns)
                + f" {totals[name] / 1024:7.1f}K"
            )
    if not totals:
        print("   no recipe pages")
        return
    largest = max(totals, key=lambda n: totals[n])
    verdict = "under" if totals[largest] < BUDGET else "OVER"
    print(f"   largest: {largest}, {totals[largest] / 1024:.1f} KB ({verdict} the {BUDGET // 1024} KB budget)")
