"""Sphinx extension: the two fixes the HTML writer needs for keyboard and screen-reader readers.

Both are made where the markup is written, in the HTML translator (whichever one the builder
uses, subclassed once the builder exists), so a page read without JavaScript has them too:

- **Toctree captions** ("Transactions and the Session" in the sidebar) come out of Sphinx's
  ``HTML5Translator.visit_title`` as ``<p class="caption" role="heading">``, with no
  ``aria-level``, which WAI-ARIA 1.2 requires of a heading (axe: ``aria-required-attr``).  Any
  tag written with ``role="heading"`` and no level gets ``aria-level="2"``, the level ARIA 1.1
  implied, so what screen readers already announce is kept.  Upstream: Sphinx issue #14030, and
  its pull request #14437 writing the same attribute; furo only places Sphinx's toctree HTML.
- **Code blocks** scroll sideways (furo's ``pre {overflow: auto}``) but nothing in them can take
  the keyboard's focus, so a reader without a mouse cannot see the end of a long line (WCAG
  2.1.1; axe: ``scrollable-region-focusable``).  Each ``<pre>`` gets ``tabindex="0"`` (focused,
  the arrow keys scroll it), and, to say what it is when focused, ``role="group"`` with a name
  such as "Python code".  Pygments writes the highlighted ``<pre>`` as a string, so it is
  patched there; a ``<pre>`` written through ``starttag`` (a parsed literal) gets the same.
  Upstream: Sphinx's ``visit_literal_block`` (or furo, which makes the block scroll) should
  write the attribute, as pydata-sphinx-theme's translator does.  The focus ring itself is in
  ``docs/_static/cookbook.css``.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.writers.html5 import HTML5Translator

#: A code block's accessible name, by its language; any other language is "Code".
CODE_NAMES = {
    "python": "Python code",
    "pycon": "Python code",
    "sql": "SQL",
    "console": "Shell commands",
    "bash": "Shell commands",
    "shell": "Shell commands",
    "sh": "Shell commands",
}
_PRE = re.compile(r"<pre(?=[\s>])")


def code_name(language: str | None) -> str:
    return CODE_NAMES.get((language or "").lower(), "Code")


def focusable_pre(html: str, name: str) -> str:
    """``html`` with its last ``<pre`` (the code, also when line numbers come first) focusable and named."""
    found = list(_PRE.finditer(html))
    if not found:
        return html
    at = found[-1].end()
    return f'{html[:at]} tabindex="0" role="group" aria-label="{name}"{html[at:]}'


class AccessibleHTMLMixin:
    """Mixed into the builder's HTML translator by :func:`on_builder_inited`."""

    def starttag(
        self, node: nodes.Element, tagname: str, suffix: str = "\n", empty: bool = False, **attributes: Any
    ) -> str:
        given = {key.lower() for key in attributes}
        if str(attributes.get("ROLE", attributes.get("role", ""))).lower() == "heading" and "aria-level" not in given:
            attributes["aria-level"] = "2"
        if tagname.lower() == "pre" and "tabindex" not in given:
            attributes.update({"tabindex": "0", "role": "group", "aria-label": code_name(node.get("language"))})
        tag: str = super().starttag(node, tagname, suffix, empty, **attributes)  # type: ignore[misc]
        return tag

    def visit_literal_block(self, node: nodes.literal_block) -> None:
        body: list[str] = self.body  # type: ignore[attr-defined]
        before = len(body)
        try:
            super().visit_literal_block(node)  # type: ignore[misc]
        except nodes.SkipNode:
            # Highlighted: the whole block was appended as one string, Pygments' <pre> inside.
            if len(body) > before and 'tabindex="0"' not in body[-1]:
                body[-1] = focusable_pre(body[-1], code_name(node.get("language")))
            raise


def on_builder_inited(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    base = app.builder.get_translator_class()
    if issubclass(base, AccessibleHTMLMixin) or not issubclass(base, HTML5Translator):
        return
    translator = type(f"Accessible{base.__name__}", (AccessibleHTMLMixin, base), {})
    app.set_translator(app.builder.name, translator, override=True)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", on_builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
