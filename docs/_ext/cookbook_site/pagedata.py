"""What the downloads and Run extensions keep per recipe page across a build, and their HTML-only nodes.

Each keeps one string per page in Sphinx's build environment (so an incremental build remembers
the pages it did not read again); :class:`PageData` is that store, with the environment events a
parallel or incremental build needs.  :func:`add_html_only_node` registers a node that only HTML
builders render.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment


class PageData:
    """One string per page, kept in the build environment under ``key``."""

    def __init__(self, key: str) -> None:
        self.key = key

    def of(self, env: BuildEnvironment) -> dict[str, str]:
        """The store of this environment (made on first use)."""
        store = getattr(env, self.key, None)
        if store is None:
            store = {}
            setattr(env, self.key, store)
        return cast(dict[str, str], store)

    def connect(self, app: Sphinx) -> None:
        """Forget a page Sphinx reads again, and merge what parallel readers kept."""
        app.connect("env-purge-doc", self._purge)
        app.connect("env-merge-info", self._merge)

    def _purge(self, app: Sphinx, env: BuildEnvironment, docname: str) -> None:
        self.of(env).pop(docname, None)

    def _merge(self, app: Sphinx, env: BuildEnvironment, docnames: Iterable[str], other: BuildEnvironment) -> None:
        theirs = self.of(other)
        self.of(env).update({name: theirs[name] for name in docnames if name in theirs})


def _skip(self: Any, node: nodes.Element) -> None:
    raise nodes.SkipNode


def add_html_only_node(app: Sphinx, node: type[nodes.Element], visit_html: Any) -> None:
    """Register ``node``: HTML builders render it with ``visit_html``, the others leave it out."""
    app.add_node(
        node,
        html=(visit_html, None),
        latex=(_skip, None),
        text=(_skip, None),
        man=(_skip, None),
        texinfo=(_skip, None),
    )
