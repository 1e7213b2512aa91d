"""``make screenshots``: PNGs of a recipe page for review, light, dark and 375 px wide.

    python -m tests.browser.screenshots [PAGE]

PAGE is a recipe page's path under docs/ (``transactions/delete-reinsert``, the default when it
exists, else the first recipe page).  The site is built into a temporary folder and served on
127.0.0.1; the PNGs (whole pages) go to ``_build/screenshots/``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Literal

from tests.browser.site import DOCS, ROOT, Watch, chromium, html_name, missing, recipe_sources, served_site

OUT = ROOT / "_build" / "screenshots"
DEFAULT = "transactions/delete-reinsert"

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

SHOTS: dict[str, tuple[ViewportSize, Literal["light", "dark"]]] = {
    "light": ({"width": 1280, "height": 900}, "light"),
    "dark": ({"width": 1280, "height": 900}, "dark"),
    "375px": ({"width": 375, "height": 740}, "light"),
}


def main() -> None:
    reason = missing()
    if reason:
        sys.exit(f"screenshots: {reason}")
    name = sys.argv[1].removesuffix(".md").removesuffix(".html") if len(sys.argv) > 1 and sys.argv[1] else DEFAULT
    source = DOCS / f"{name}.md"
    if not source.exists():
        if len(sys.argv) > 1 and sys.argv[1]:
            sys.exit(f"screenshots: no page docs/{name}.md")
        source = recipe_sources()[0]
    OUT.mkdir(parents=True, exist_ok=True)
    stem = source.relative_to(DOCS).with_suffix("").as_posix().replace("/", "-")
    with served_site() as (_, server), chromium() as (_, browser):
        for label, (viewport, theme) in SHOTS.items():
            context = browser.new_context(viewport=viewport, color_scheme=theme)
            context.add_init_script(f"localStorage.setItem('theme', '{theme}')")
            tab = Watch(context.new_page(), server)
            tab.goto(html_name(source))
            path = OUT / f"{stem}-{label}.png"
            tab.page.screenshot(path=str(path), full_page=True)
            context.close()
            problems = f" (page problems: {tab.problems})" if tab.problems else ""
            print(f"{path.relative_to(ROOT)}{problems}")


if __name__ == "__main__":
    main()
