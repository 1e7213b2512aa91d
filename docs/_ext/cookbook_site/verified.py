"""Sphinx extension: what the examples were verified on, read from the test runs (never typed in).

Each run of every page (``make test``, ``make test SQLALCHEMY=2.0``, the CI matrix) leaves a
record per SQLAlchemy series, ``_build/verified-<series>.json``: the exact SQLAlchemy, Python and
database versions, and each page's result on each database (and, for a page with Session and AsyncSession
tabs, in each of its two runs there).  From those records

- ``{verified-with}`` lists, on the landing page, each series with the versions and databases
  it ran on;
- every recipe page gets one line under its title saying the same for that page.

A series or database with no record says so: this build did not verify it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective

from cookbook_site import page as page_model
from cookbook_site.page import API_LABELS, APIS, BACKEND_LABELS, BACKENDS, SERIES, PageError, run_name
from cookbook_site.pagedata import PageData

#: Where the test runs leave their records, relative to conf.py's folder.
RECORDS = "_build/verified-{series}.json"


@dataclass(frozen=True)
class Run:
    """One series' record: what ran, on what, and how each page did."""

    series: str
    sqlalchemy: str
    python: str
    #: backend -> (server or library version, every example passed)
    backends: dict[str, tuple[str, bool]]
    #: page -> backend -> every example passed
    pages: dict[str, dict[str, bool]]


def read_runs(confdir: Path) -> dict[str, Run]:
    """The records of the series that have one, by series."""
    runs = {}
    for series in SERIES:
        try:
            data = json.loads((confdir / RECORDS.format(series=series)).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        runtime: dict[str, str] = data.get("runtime", {})
        backends = {
            name: (str(value.get("version", "")), bool(value.get("passed")))
            for name, value in data.get("backends", {}).items()
            if name in BACKENDS
        }
        runs[series] = Run(
            series, runtime.get("SQLAlchemy", series), runtime.get("Python", "?"), backends, data.get("pages", {})
        )
    return runs


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _database(name: str, version: str) -> str:
    # MariaDB reports "10.11.6-MariaDB-0+deb12u1": the version is what comes before the dash.
    return f"{BACKEND_LABELS[name]} {version.split('-')[0]}"


def summary(runs: dict[str, Run]) -> list[str]:
    """The landing page's list: one item per series."""
    items = []
    for series in reversed(SERIES):
        run = runs.get(series)
        if run is None:
            items.append(f"SQLAlchemy {series}: not run before this build (CI runs it on every change)")
            continue
        passed = [_database(n, v) for n in BACKENDS if (found := run.backends.get(n)) and found[1] for v in [found[0]]]
        failed = [BACKEND_LABELS[n] for n in BACKENDS if (found := run.backends.get(n)) and not found[1]]
        missing = [BACKEND_LABELS[n] for n in BACKENDS if n not in run.backends]
        said = [f"SQLAlchemy {run.sqlalchemy} on Python {run.python}:"]
        if passed:
            said.append(f"every example passed on {_listing(passed)}")
        if failed:
            said.append(f"{'; ' if passed else ''}examples failed on {_listing(failed)}")
        if missing:
            said.append(f"({_listing(missing)} not run before this build)")
        items.append(" ".join(said).replace(" ;", ";"))
    return items


def page_line(runs: dict[str, Run], docname: str, apis: tuple[str, ...] = ("session",)) -> str:
    """The line under a recipe page's title: the series, databases and APIs its examples passed on.

    ``apis`` are the page's (:func:`cookbook_site.page.apis_of`); a page with Session and
    AsyncSession tabs counts on a database only if both of its runs there passed.
    """
    tabbed = set(apis) == set(APIS)
    verified: list[tuple[str, str]] = []  # (release, databases)
    failed: list[str] = []
    for series in reversed(SERIES):
        run = runs.get(series)
        results = run.pages.get(docname, {}) if run is not None else {}
        if run is None or not results:
            continue

        def outcomes(name: str, results: dict[str, bool] = results) -> list[bool | None]:
            return [results.get(run_name(name, api)) for api in (APIS if tabbed else ("session",))]

        bad = [BACKEND_LABELS[n] for n in BACKENDS if False in outcomes(n)]
        if bad:
            failed.append(f"SQLAlchemy {run.sqlalchemy} on {_listing(bad)}")
        good = [_database(n, run.backends.get(n, ("", True))[0]) for n in BACKENDS if all(outcomes(n))]
        if good:
            verified.append((run.sqlalchemy, _listing(good)))
    if not verified and not failed:
        return "This page's examples were not run before this build."
    said = []
    with_api = f"Verified with {_listing([API_LABELS[api] for api in apis])} on"
    if verified and len({databases for _, databases in verified}) == 1:
        said.append(f"{with_api} SQLAlchemy {_listing([r for r, _ in verified])}, with {verified[0][1]}.")
    elif verified:
        said.append(f"{with_api} " + _listing([f"SQLAlchemy {r} with {d}" for r, d in verified]) + ".")
    if failed:
        said.append(f"Failed on {_listing(failed)}.")
    unrun = [f"SQLAlchemy {s}" for s in SERIES if s not in runs]
    if unrun:
        said.append(f"Not run on {_listing(unrun)} before this build.")
    return " ".join(said)


#: What each page said, as JSON ``[apis or null, text]``: a recipe page's line (apis are its runs' APIs)
#: or, for a page with {verified-with}, its list (apis null).  A build reads a page again only when
#: what the records say for it now differs (not whenever a test run rewrote a record, and not on
#: every build while a record is missing, as a Sphinx file dependency would).
SAID = PageData("cookbook_verified_said")


def _saying(runs: dict[str, Run], docname: str, apis: list[str] | None) -> str:
    return json.dumps(summary(runs)) if apis is None else page_line(runs, docname, tuple(apis))


def _said(env: Any, docname: str, apis: list[str] | None, text: str) -> None:
    SAID.of(env)[docname] = json.dumps([apis, text])


def on_env_get_outdated(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """The pages whose line (or list) would read differently from the records as they are now."""
    runs = read_runs(Path(app.confdir))
    stale = []
    for docname, said in SAID.of(env).items():
        apis, text = json.loads(said)
        if _saying(runs, docname, apis) != text:
            stale.append(docname)
    return stale


class VerifiedWith(SphinxDirective):
    """A list: each SQLAlchemy series the examples ran on, with the versions and databases."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        items = summary(read_runs(Path(self.env.app.confdir)))
        _said(self.env, self.env.docname, None, json.dumps(items))
        bullets = nodes.bullet_list()
        for item in items:
            bullets += nodes.list_item("", nodes.paragraph(text=item))
        return [bullets]


def on_doctree_read(app: Sphinx, doctree: nodes.document) -> None:
    """Under each recipe page's title: the line saying what its examples were verified on."""
    docname = app.env.docname
    if not page_model.is_recipe(docname):
        return
    section = doctree.next_node(nodes.section)
    if section is None or not section.children:
        return
    try:
        apis = page_model.apis_of(page_model.read(app.env.doc2path(docname)))
    except PageError:
        apis = ("session",)  # the downloads extension reports the page
    text = page_line(read_runs(Path(app.confdir)), docname, apis)
    _said(app.env, docname, list(apis), text)
    line = nodes.paragraph(text=text, classes=["verified-on"])
    section.insert(1, line)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("verified-with", VerifiedWith)
    # After the downloads extension has put its link under the short answer (the first paragraph).
    app.connect("doctree-read", on_doctree_read, priority=600)
    app.connect("env-get-outdated", on_env_get_outdated)
    SAID.connect(app)
    return {"version": "3", "env_version": 3, "parallel_read_safe": True, "parallel_write_safe": True}
