"""Sphinx extension: ship only the rules of a stylesheet that can match something on the site.

A recipe page must weigh under 250 KB with everything it loads.  Two stylesheets every page
loads are mostly rules no page can use: sphinx-design's (about 55 KB) styles grids, cards,
badges, buttons and dropdowns, where the cookbook uses its tabs; the Pygments one (about 20 KB)
colours the tokens of every language, in light and dark.  After each HTML build, the copies of
the stylesheets named in ``trimmed_stylesheets`` (in ``_static/``, freshly copied or written by
that build) keep the selectors whose classes all appear on some page of the site, the at-rules
around them, custom properties, and the animations the kept rules name.  A page that starts
using another component or language gets its rules on the next build.

Only stylesheets whose classes are all written into the HTML (none added by JavaScript) belong
in that list.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

_CLASS = re.compile(r"\.(-?[_a-zA-Z][\w-]*)")
_CLASS_ATTRIBUTE = re.compile(r'class="([^"]*)"')
_COMMENT = re.compile(r"/\*.*?\*/", re.S)


def _blocks(css: str) -> Iterator[tuple[str, str]]:
    """(prelude, body) of each top-level rule or at-rule of a stylesheet without comments."""
    position = 0
    while True:
        opening = css.find("{", position)
        if opening < 0:
            return
        depth, index = 1, opening + 1
        while depth and index < len(css):
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
            parts.append(selector[start:index].strip())
            start = index + 1
    parts.append(selector[start:].strip())
    return parts


def _without_strings(selector: str) -> str:
    """A selector with its attribute values (``[data-theme="dark"]``) left out: they hold no classes."""
    return re.sub(r"\[[^\]]*\]", "", selector)


def trim(css: str, used: set[str]) -> str:
    """The rules of ``css`` that can match a page whose elements carry only the classes in ``used``."""
    kept = []
    for prelude, body in _blocks(_COMMENT.sub("", css)):
        if prelude.startswith("@keyframes") or prelude.startswith("@font-face"):
            kept.append((prelude, body))
        elif prelude.startswith("@"):
            inner = trim(body, used)
            if inner:
                kept.append((prelude, inner))
        else:
            parts = [p for p in _split_selector(prelude) if set(_CLASS.findall(_without_strings(p))) <= used]
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
    """Every class on any HTML page of the site."""
    used: set[str] = set()
    for page in outdir.rglob("*.html"):
        for attribute in _CLASS_ATTRIBUTE.findall(page.read_text(encoding="utf-8", errors="replace")):
            used.update(attribute.split())
    return used


def on_build_finished(app: Sphinx, exception: BaseException | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    names: list[str] = app.config.trimmed_stylesheets
    used = used_classes(Path(app.outdir))
    for name in names:
        path = Path(app.outdir) / "_static" / name
        if not path.is_file():
            continue
        css = path.read_text(encoding="utf-8")
        trimmed = trim(css, used)
        path.write_text(trimmed, encoding="utf-8")
        logger.info("%s: %d of %d bytes kept", name, len(trimmed), len(css))


def setup(app: Sphinx) -> dict[str, Any]:
    # It trims sphinx-design's stylesheet, among others.
    app.setup_extension("sphinx_design")
    app.add_config_value("trimmed_stylesheets", [], "html", [list])
    # After furo's own build-finished handler, which rewrites pygments.css (light and dark).
    app.connect("build-finished", on_build_finished, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
