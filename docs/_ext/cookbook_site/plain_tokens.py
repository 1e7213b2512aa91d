"""Sphinx extension: leave out the highlighting spans that colour a token as plain text.

A recipe page must weigh under 250 KB with everything it loads, and most of a code-heavy page's
HTML is Pygments' markup: every name and every bracket in its own ``<span class="n">``.  The
site's Pygments styles (light and dark, as furo writes them into ``pygments.css``) give names and
punctuation exactly the colour of the code block itself, so those spans change nothing a reader
sees.  After each HTML build, once furo has written the stylesheet, the site's pages lose
every span whose class has, in every theme, no rule but that same colour; the stylesheet
trimming (:mod:`cookbook_site.trim_css`, which runs after this) then drops their rules too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: A rule of the Pygments stylesheet (nested ``@media`` rules are matched from their inside).
_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
#: A selector for the code block itself, or for one token class in it, after a theme's prefix.
_SELECTOR = re.compile(r"^(?P<theme>.*?)\.highlight(?: \.(?P<token>[\w-]+))?$")


def _declarations(body: str) -> frozenset[tuple[str, str]]:
    pairs = (part.split(":", 1) for part in body.split(";") if ":" in part)
    return frozenset((name.strip().lower(), value.strip().lower()) for name, value in pairs)


def plain_classes(css: str) -> set[str]:
    """The token classes whose only rule, in every theme of ``css``, is the code block's own colour."""
    blocks: dict[str, frozenset[tuple[str, str]]] = {}  # theme -> the code block's declarations
    tokens: dict[str, dict[str, frozenset[tuple[str, str]]]] = {}  # token -> theme -> declarations
    for prelude, body in _RULE.findall(re.sub(r"/\*.*?\*/", "", css, flags=re.S)):
        for selector in prelude.split(","):
            found = _SELECTOR.match(" ".join(selector.split()))
            if found is None:
                continue
            theme, token = found.group("theme").strip(), found.group("token")
            if token is None:
                blocks[theme] = blocks.get(theme, frozenset()) | _declarations(body)
            else:
                tokens.setdefault(token, {})[theme] = _declarations(body)
    plain = set()
    for token, themes in tokens.items():
        colours = [{("color", value) for name, value in blocks.get(theme, ()) if name == "color"} for theme in themes]
        if all(declarations <= colour for declarations, colour in zip(themes.values(), colours, strict=True)):
            plain.add(token)
    return plain


def unwrap(html: str, classes: set[str]) -> str:
    """``html`` without the spans (with no element inside) whose single class is one of ``classes``."""
    if not classes:
        return html
    names = "|".join(re.escape(name) for name in sorted(classes))
    return re.sub(rf'<span class="(?:{names})">([^<]*)</span>', r"\1", html)


def on_build_finished(app: Sphinx, exception: BaseException | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    stylesheet = Path(app.outdir) / "_static" / "pygments.css"
    if not stylesheet.is_file():
        return
    classes = plain_classes(stylesheet.read_text(encoding="utf-8"))
    before = after = 0
    # Every page, also those this build did not write again: a page already done is left as it is.
    for path in Path(app.outdir).rglob("*.html"):
        html = path.read_text(encoding="utf-8")
        trimmed = unwrap(html, classes)
        before, after = before + len(html), after + len(trimmed)
        if trimmed != html:
            path.write_text(trimmed, encoding="utf-8")
    logger.info("plain tokens (%s): %d of %d bytes of HTML kept", ", ".join(sorted(classes)), after, before)


def setup(app: Sphinx) -> dict[str, Any]:
    # After furo's build-finished handler writes pygments.css, before cookbook_site.trim_css (900).
    app.connect("build-finished", on_build_finished, priority=800)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
