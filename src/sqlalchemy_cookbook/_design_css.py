"""Sphinx extension: ship only the sphinx-design CSS the site's pages use.

sphinx-design's stylesheet (about 55 KB) styles every component it offers: grids, cards,
badges, buttons, dropdowns, tabs.  The cookbook uses its tabs, and a recipe page must weigh
under 250 KB with everything it loads.  After each HTML build, the copy of the stylesheet in
``_static/`` is rewritten from sphinx-design's original, keeping the rules whose ``sd-*``
classes all appear on some page of the site (plus the custom properties and animations those
rules use).  A page that starts using another component gets its styles on the next build.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

STYLESHEET = "sphinx-design.min.css"
_SD_CLASS = re.compile(r"\.(sd-[\w-]+)")
_CLASS_ATTRIBUTE = re.compile(r'class="([^"]*)"')


def _blocks(css: str) -> Iterator[tuple[str, str]]:
    """(prelude, body) of each top-level rule or at-rule of a minified stylesheet."""
    position = 0
    while True:
        opening = css.find("{", position)
        if opening < 0:
            return
        depth, index = 1, opening + 1
        while depth:
            depth += {"{": 1, "}": -1}.get(css[index], 0)
            index += 1
        yield css[position:opening].strip(), css[opening + 1 : index - 1]
        position = index


def _split_selector(selector: str) -> list[str]:
    """A selector list split at its top-level commas (not those inside ``:is(...)``)."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(selector[start:index])
            start = index + 1
    parts.append(selector[start:])
    return parts


def trim(css: str, used: set[str]) -> str:
    """The rules of ``css`` that can match a page using only the ``sd-*`` classes in ``used``."""
    kept = []
    for prelude, body in _blocks(css):
        if prelude.startswith("@keyframes"):
            kept.append((prelude, body))
        elif prelude.startswith("@"):
            inner = trim(body, used)
            if inner:
                kept.append((prelude, inner))
        else:
            parts = [p for p in _split_selector(prelude) if set(_SD_CLASS.findall(p)) <= used]
            if parts:
                kept.append((",".join(parts), body))
    rules = "".join(f"{prelude}{{{body}}}" for prelude, body in kept if not prelude.startswith("@keyframes"))
    animations = "".join(
        f"{prelude}{{{body}}}"
        for prelude, body in kept
        if prelude.startswith("@keyframes") and prelude.split()[-1] in rules
    )
    return rules + animations


def used_classes(outdir: Path) -> set[str]:
    """Every ``sd-*`` class on any HTML page of the site."""
    used: set[str] = set()
    for page in outdir.rglob("*.html"):
        for attribute in _CLASS_ATTRIBUTE.findall(page.read_text(encoding="utf-8", errors="replace")):
            used.update(name for name in attribute.split() if name.startswith("sd-"))
    return used


def on_build_finished(app: Sphinx, exception: BaseException | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    import sphinx_design

    original = Path(sphinx_design.__file__).parent / "static" / STYLESHEET
    copy = Path(app.outdir) / "_static" / STYLESHEET
    if not original.is_file() or not copy.is_file():
        return
    css = original.read_text(encoding="utf-8")
    trimmed = trim(css, used_classes(Path(app.outdir)))
    copy.write_text(trimmed, encoding="utf-8")
    logger.info("sphinx-design CSS: %d of %d bytes kept", len(trimmed), len(css))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("build-finished", on_build_finished)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
