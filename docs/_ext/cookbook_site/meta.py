"""Sphinx extension: each page's short answer as its description, ``llms.txt`` listing them, and ``sitemap.xml``.

A recipe page answers its question in the first paragraph under its title (after the FAQ's
question, quoted); any other page opens with a paragraph saying what it is.  That paragraph is
what a search result, a shared link and an assistant should show, so it becomes

- the page's ``<meta name="description">`` and its ``og:description``: the same text, its first
  whole sentences within ``ogp_description_length`` characters (a first sentence longer than
  that is cut on a word boundary, with "…").  This extension sets both in the page's metadata
  and writes the ``<meta>`` tag from it; sphinxext-opengraph, which comes after, then adds no
  description of its own and writes the page's ``og:description`` field in place of the one it
  would take from the top of the page (the verified-on line first).  The other Open Graph tags
  (``og:title``, ``og:url``, ``og:type``, ``og:site_name``) are sphinxext-opengraph's;
- the page's entry in ``llms.txt`` (https://llmstxt.org/), written when the HTML build finishes:
  the site's title, the front page's paragraph as its summary, then every page in the order of
  the front page's toctrees, under their captions, as ``- [title](URL): short answer`` (the whole
  paragraph, inline code in backticks).  sphinx-llms-txt lists titles only, so ``llms.txt`` is
  written here; sphinx-llms-txt still writes ``llms-full.txt``, linked at the end.

The paragraph is found when a page is read, after :mod:`cookbook_site.verified` has put its line
(``<p class="verified-on">``) under the title and :mod:`cookbook_site.downloads` its download
link (a node of its own) under the short answer: the first paragraph directly in the title's
section that is not the verified-on line.  Its text is taken once every page has been read,
because a ``{ref}`` to another page shows that page's title, known only then.  URLs start with
``html_baseurl``.

``sitemap.xml`` lists every page in the front page's toctrees (the front page first) at
``html_baseurl``, written when every HTML build finishes, an incremental one too (sphinx-sitemap
lists only the pages that build wrote, and starts a process of its own for every build).

Needs sphinxext-opengraph (the Open Graph tags, and ``ogp_description_length``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

from cookbook_site import page as page_model
from cookbook_site.pagedata import PageData

logger = logging.getLogger(__name__)

#: The paragraph :mod:`cookbook_site.verified` puts under a recipe page's title.
VERIFIED_CLASS = "verified-on"
#: What ``llms.txt`` is called in the HTML output.
LLMS_TXT = "llms.txt"
#: What the sitemap is called in the HTML output.
SITEMAP_XML = "sitemap.xml"
#: Each page's short answer as one line of Markdown, for ``llms.txt`` (made anew once every page is read).
SHORT_ANSWERS = PageData("cookbook_short_answers")
#: Each page's short-answer paragraph as read (its references not yet resolved), by page.
_PARAGRAPHS = "cookbook_short_answer_paragraphs"

_SENTENCE_END = re.compile(r"[.!?](?= )")


# --- Finding the short answer and its text -----------------------------------------------------


def short_answer(doctree: nodes.document) -> nodes.paragraph | None:
    """The page's first paragraph directly under its title, not counting the verified-on line."""
    section = doctree.next_node(nodes.section)
    if section is None:
        return None
    for child in section.children:
        if isinstance(child, nodes.paragraph) and VERIFIED_CLASS not in child["classes"]:
            return child
    return None


def pieces(node: nodes.Node) -> Iterator[tuple[str, bool]]:
    """A paragraph's text, piece by piece, each with whether it is inline code."""
    if isinstance(node, nodes.literal):
        yield node.astext(), True
    elif isinstance(node, nodes.Text):
        yield node.astext(), False
    else:
        for child in node.children:
            yield from pieces(child)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def plain(parts: Iterable[tuple[str, bool]]) -> str:
    """The text on one line, with single spaces."""
    return _one_line("".join(text for text, _ in parts))


def markdown(parts: Iterable[tuple[str, bool]]) -> str:
    """The text on one line of Markdown: inline code in backticks."""

    def code(text: str) -> str:
        fence = "``" if "`" in text else "`"
        pad = " " if text.startswith("`") or text.endswith("`") else ""
        return f"{fence}{pad}{text}{pad}{fence}"

    return _one_line("".join(code(text) if is_code else text for text, is_code in parts))


def description(parts: list[tuple[str, bool]], limit: int) -> str:
    """The text's first whole sentences within ``limit`` characters; when the first sentence is
    longer, it cut on a word boundary, with "…".  A full stop in inline code ends no sentence."""
    text = plain(parts)
    if len(text) <= limit:
        return text
    # The same text with the code's punctuation masked: the same length, character for character.
    masked = _one_line("".join(re.sub(r"[.!?]", "_", t) if is_code else t for t, is_code in parts))
    ends = [found.end() for found in _SENTENCE_END.finditer(masked, 0, limit)]
    if ends:
        return text[: ends[-1]]
    cut = text[: limit - 1]
    if text[limit - 1] != " ":
        cut = cut.rpartition(" ")[0] or cut
    return cut.rstrip(",;:—–- ") + "…"


def resolved(paragraph: nodes.paragraph, app: Sphinx, docname: str) -> nodes.paragraph:
    """A copy of the paragraph whose ``{ref}`` and ``{doc}`` references show their target's title.

    Every other reference already shows its text (a ``{class}`` its name); the standard domain
    looks titles up, as the HTML writer's references will.
    """
    copy = paragraph.deepcopy()
    env = app.env
    std = env.get_domain("std")
    for xref in list(copy.findall(addnodes.pending_xref)):
        if xref.get("refdomain") != "std":
            continue
        content = cast(nodes.Element, xref[0]) if xref.children else nodes.inline()
        found = std.resolve_xref(env, docname, app.builder, xref["reftype"], xref["reftarget"], xref, content)
        xref.replace_self(found if found is not None else content)
    return copy


# --- Sphinx events -----------------------------------------------------------------------------


def _paragraphs(env: BuildEnvironment) -> dict[str, nodes.paragraph]:
    store = getattr(env, _PARAGRAPHS, None)
    if store is None:
        store = {}
        setattr(env, _PARAGRAPHS, store)
    return cast(dict[str, nodes.paragraph], store)


def on_doctree_read(app: Sphinx, doctree: nodes.document) -> None:
    """Keep the page's short-answer paragraph (a recipe page without one is a warning)."""
    docname = app.env.docname
    paragraph = short_answer(doctree)
    if paragraph is not None:
        kept = paragraph.deepcopy()
        for node in kept.findall():
            node.document = None  # type: ignore[assignment]  # a copy still points at its document: pickled, the whole page's doctree
        _paragraphs(app.env)[docname] = kept
    elif page_model.is_recipe(docname):
        logger.warning(
            "a recipe page needs its short answer: a paragraph under its title", location=docname, type="cookbook_meta"
        )


def on_env_updated(app: Sphinx, env: BuildEnvironment) -> None:
    """Every page read: each page's description and og:description, and its llms.txt line."""
    limit = app.config.ogp_description_length
    answers = SHORT_ANSWERS.of(env)
    answers.clear()
    for docname, paragraph in _paragraphs(env).items():
        if docname not in env.all_docs:
            continue
        parts = list(pieces(resolved(paragraph, app, docname)))
        answers[docname] = markdown(parts)
        text = description(parts, limit)
        env.metadata[docname]["description"] = text
        # sphinxext-opengraph writes og:* fields as they are, escaping only double quotes.
        env.metadata[docname]["og:description"] = html.escape(text, quote=False)


def on_html_page_context(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: nodes.document | None
) -> None:
    """Write the page's description into its ``<head>``, before sphinxext-opengraph looks for one."""
    text = (context.get("meta") or {}).get("description")
    if text:
        context["metatags"] += f'<meta name="description" content="{html.escape(text)}" />\n'


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    _paragraphs(env).pop(docname, None)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: Iterable[str], other: BuildEnvironment) -> None:
    theirs = _paragraphs(other)
    _paragraphs(env).update({name: theirs[name] for name in docnames if name in theirs})


# --- llms.txt ----------------------------------------------------------------------------------


def toctree_order(env: BuildEnvironment, root: str) -> list[tuple[str | None, list[str]]]:
    """(caption, pages) of each toctree on the root page, in order; a page's own toctrees follow it."""
    seen = {root}

    def with_children(docname: str) -> list[str]:
        if docname in seen or docname not in env.all_docs:
            return []
        seen.add(docname)
        return [docname] + [name for child in env.toctree_includes.get(docname, []) for name in with_children(child)]

    groups: list[tuple[str | None, list[str]]] = []
    for toctree in env.get_doctree(root).findall(addnodes.toctree):
        pages = [name for _, ref in toctree["entries"] for name in with_children(ref)]
        if pages:
            groups.append((toctree.get("caption"), pages))
    return groups


def llms_txt(app: Sphinx) -> str:
    """The text of ``llms.txt``: title, summary, then every page with its URL and short answer."""
    env = app.env
    config = app.config
    root = config.root_doc
    answers = SHORT_ANSWERS.of(env)
    base = config.html_baseurl.rstrip("/") + "/" if config.html_baseurl else ""

    def entry(docname: str) -> str:
        title = _one_line(env.titles[docname].astext()) if docname in env.titles else docname
        title = re.sub(r"([\[\]])", r"\\\1", title)
        answer = answers.get(docname)
        url = base + app.builder.get_target_uri(docname)
        return f"- [{title}]({url})" + (f": {answer}" if answer else "")

    lines = [f"# {config.project}", ""]
    if root in answers:
        lines += [f"> {answers[root]}", ""]
    lines += [entry(root), ""]
    for caption, pages in toctree_order(env, root):
        lines += [f"## {caption or 'Pages'}", "", *map(entry, pages), ""]
    if getattr(config, "llms_txt_full_file", False):
        full = config.llms_txt_full_filename
        lines += ["## Optional", "", f"- [{full}]({base}{full}): the Markdown (MyST) source of every page, in one file"]
    return "\n".join(lines).rstrip("\n") + "\n"


# --- sitemap.xml --------------------------------------------------------------------------------


def sitemap_xml(app: Sphinx) -> str:
    """The text of ``sitemap.xml``: the URL of the front page and of every page in its toctrees."""
    env = app.env
    root = app.config.root_doc
    base = app.config.html_baseurl.rstrip("/") + "/" if app.config.html_baseurl else ""
    pages = [root] + [name for _, names in toctree_order(env, root) for name in names]
    urls = "".join(f"<url><loc>{html.escape(base + app.builder.get_target_uri(name))}</loc></url>" for name in pages)
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>\n'
    )


def on_build_finished(app: Sphinx, exception: BaseException | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    (out / LLMS_TXT).write_text(llms_txt(app), encoding="utf-8")
    (out / SITEMAP_XML).write_text(sitemap_xml(app), encoding="utf-8")


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinxext.opengraph")
    # After verified.py (600) and downloads.py (500) have put their lines under the title.
    app.connect("doctree-read", on_doctree_read, priority=700)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-updated", on_env_updated)
    # Before sphinxext-opengraph (500), which adds a description of its own to a page without one.
    app.connect("html-page-context", on_html_page_context, priority=400)
    app.connect("build-finished", on_build_finished)
    return {"version": "1", "env_version": 1, "parallel_read_safe": True, "parallel_write_safe": True}
