"""Sphinx extension: "Run" for every recipe page's examples, in the reader's browser (Pyodide).

Each Python block of a recipe page gets a Run control (added by ``static/runner/runner.js``, so a
page read without JavaScript stays exactly as it was).  Run executes, in a Web Worker, the page's
blocks up to that one, in page order, as the tests run them on SQLite: the untabbed blocks, the
SQLite tab's, and the hidden checks.  The list of blocks comes from the page model
(:mod:`cookbook_site.page`), the reading the tests and the downloads use; the browser compares
each output with Sybil's own checker, shipped to it as Sybil's wheel.

At build time this extension

- marks each Python block of a recipe page (class ``cookbook-run``) and says, for each, whether
  the browser can run it, in a small JSON element at the end of the page;
- writes ``_runner/<page>.json``: the examples the browser runs and what each must print;
- copies the self-hosted Pyodide and wheels (``make pyodide`` fetches them into
  ``cookbook_runner_assets``) into ``_pyodide/`` in the output, with a wheel of the recipe
  library (the pages import it), built from the source being documented, added to the site's
  lock file.

Nothing of Pyodide is loaded until the reader presses Run.
"""

from __future__ import annotations

import ast
import base64
import filecmp
import hashlib
import io
import json
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.osutil import relative_uri
from sphinx.writers.html5 import HTML5Translator

import cookbook_site
from cookbook_site import page as page_model
from cookbook_site.page import BACKEND_LABELS, DEFAULT_BACKEND, Example, PageError
from cookbook_site.pagedata import PageData, add_html_only_node
from cookbook_site.pyodide_assets import PYODIDE_VERSION

# Read from the installed distribution: importing SQLAlchemy here would cost every build ~0.2 s.
SQLALCHEMY_VERSION = version("SQLAlchemy")

logger = logging.getLogger(__name__)

#: Where the per-page block lists go in the HTML output.
OUTPUT_FOLDER = "_runner"
#: Where the Pyodide assets go in the HTML output.
ASSETS_FOLDER = "_pyodide"
#: The backend the browser runs.
BROWSER_BACKEND = DEFAULT_BACKEND
#: The SQLAlchemy series the browser runs (the release requirements.txt pins).
BROWSER_SERIES = ".".join(SQLALCHEMY_VERSION.split(".")[:2])
#: The API the browser runs, on a page with Session and AsyncSession tabs.
BROWSER_API = "session"
#: This extension's own static files (``runner/``), added to the site's.
STATIC = Path(cookbook_site.__file__).parent / "static"
#: What the extension keeps of each page across a build.
STORE = PageData("cookbook_runner_pages")
#: The files under ``_static/runner/`` the page script loads on the first Run, by content hash.
ON_DEMAND = {"session": "session.mjs", "worker": "worker.mjs", "runner": "cookbook_runner.py"}
_hashes: dict[str, str] = {}

#: Modules whose use means an example cannot run in the browser's Python, and why.
UNAVAILABLE = {
    "threading": "it starts threads, which Python in the browser cannot",
    "concurrent": "it starts threads, which Python in the browser cannot",
    "multiprocessing": "it starts processes, which Python in the browser cannot",
    "subprocess": "it starts processes, which Python in the browser cannot",
    "greenlet": "it needs greenlet, which Python in the browser does not have",
    "asyncio": "it needs asyncio with greenlet, which Python in the browser does not have",
    "sqlalchemy.ext.asyncio": "it needs asyncio with greenlet, which Python in the browser does not have",
    "fastapi": "it needs FastAPI, which Python in the browser here does not load",
    "starlette": "it needs FastAPI, which Python in the browser here does not load",
    "httpx": "it needs httpx, which Python in the browser here does not load",
    "flask": "it needs Flask, which Python in the browser here does not load",
    "flask_sqlalchemy": "it needs Flask-SQLAlchemy, which Python in the browser here does not load",
    "pytest": "it runs pytest in a process of its own, which Python in the browser cannot start",
    "psycopg": "it needs a database server",
    "pymysql": "it needs a database server",
}


def unavailable(source: str) -> str | None:
    """Why a piece of code cannot run in the browser (a module it imports, or ``await``), or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        if page_model.needs_await(source):
            return "it awaits, and SQLAlchemy's asyncio needs greenlet, which Python in the browser does not have"
        return None
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            for module, why in UNAVAILABLE.items():
                if name == module or name.startswith(module + "."):
                    return why
    return None


def runner_blocks(examples: Iterable[Example]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the browser needs of a page's examples.

    Returns ``(visible, runs)``: for each visible Python block, in page order, whether Run is
    offered (``{"run": n}``, ``n`` its place in ``runs``) or why not (``{"why": ...}``); and the
    blocks the browser runs, in page order, each with its examples.
    """
    blocks: dict[int, list[Example]] = {}
    for example in examples:
        blocks.setdefault(example.block, []).append(example)
    visible: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    blocked: str | None = None  # set once a block the others depend on cannot run here
    for index, members in blocks.items():
        first = members[0]
        backend = first.backend
        entry: dict[str, Any]
        if backend not in (None, BROWSER_BACKEND):
            label = BACKEND_LABELS.get(backend or "", backend or "")
            entry = {"why": f"{label} only: in your browser, Run uses SQLite (the SQLite tab)", "kind": "backend"}
        elif first.series not in (None, BROWSER_SERIES):
            entry = {
                "why": f"SQLAlchemy {first.series} only: in your browser, Run uses SQLAlchemy {SQLALCHEMY_VERSION}",
                "kind": "series",
            }
        elif first.api not in (None, BROWSER_API):
            entry = {
                "why": "AsyncSession tab: in your browser, Run runs the Session tab; SQLAlchemy's asyncio needs "
                "greenlet, which Python in the browser does not have",
                "kind": "api",
            }
        elif all(e.skip is not None for e in members):
            entry = {"why": f"The tests skip this example ({first.skip}), so Run does too", "kind": "skip"}
        elif blocked is not None:
            entry = {"why": blocked, "kind": "blocked"}
        else:
            why = next((w for e in members if e.skip is None for w in [unavailable(e.source)] if w), None)
            if why is not None:
                entry = {
                    "why": f"Cannot run in your browser: {why}; download the recipe to run it",
                    "kind": "unavailable",
                }
                blocked = (
                    f"Cannot run in your browser: it needs the example at line {first.line}, which cannot run here"
                )
            else:
                entry = {"run": len(runs)}
                runs.append(
                    {
                        "block": index,
                        "visible": first.visible,
                        "examples": [
                            {
                                "line": e.line,
                                "kind": e.kind,
                                "source": e.source,
                                "want": e.want,
                                "exc_msg": e.exc_msg,
                                "flags": e.flags,
                                "skip": e.skip,
                            }
                            for e in members
                        ],
                    }
                )
        if first.visible:
            visible.append(entry)
    return visible, runs


# --- The Sphinx side --------------------------------------------------------------------------


class runner_data(nodes.General, nodes.Element):  # noqa: N801 (docutils node naming)
    """The page's runner settings, as a JSON element; rendered by HTML builders only."""


def _json_for_html(value: object) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def visit_runner_data_html(self: HTML5Translator, node: runner_data) -> None:
    page = self.builder.get_target_uri(self.builder.current_docname)
    settings = {
        "page": node["page"],
        "data": relative_uri(page, node["data"]),
        "pyodide": relative_uri(page, f"{_assets.folder}/") if _assets is not None else None,
        "versions": {"pyodide": PYODIDE_VERSION, "sqlalchemy": SQLALCHEMY_VERSION},
        "hashes": _hashes,
        "megabytes": _assets.megabytes if _assets is not None else 0,
        "blocks": node["blocks"],
    }
    self.body.append(f'<script type="application/json" id="cookbook-runner">{_json_for_html(settings)}</script>\n')
    raise nodes.SkipNode


def _python_blocks(doctree: nodes.document) -> list[nodes.literal_block]:
    return [block for block in doctree.findall(nodes.literal_block) if block.get("language") == "python"]


def on_doctree_read(app: Sphinx, doctree: nodes.document) -> None:
    env = app.env
    docname = env.docname
    if not page_model.is_recipe(docname):
        return
    source = Path(env.doc2path(docname))
    try:
        examples = page_model.read(source).examples
    except PageError as exc:
        logger.warning("runner: %s", exc, location=docname, type="runner")
        return
    if not examples:
        return
    visible, runs = runner_blocks(examples)
    shown = _python_blocks(doctree)
    if len(shown) != len(visible):
        logger.warning(
            "runner: the page shows %d Python blocks but the tests see %d; no Run on this page",
            len(shown),
            len(visible),
            location=docname,
            type="runner",
        )
        return
    for block in shown:
        block["classes"].append("cookbook-run")
    page = source.relative_to(Path(env.srcdir)).as_posix()
    data = json.dumps({"page": page, "blocks": runs}, separators=(",", ":"))
    STORE.of(env)[docname] = data
    target = f"{OUTPUT_FOLDER}/{docname}.json?v={hashlib.sha256(data.encode()).hexdigest()[:12]}"
    doctree += runner_data(page=page, data=target, blocks=visible)


def _written_with() -> str:
    """What the pages' settings say beyond their own blocks: when it changes, they are rewritten."""
    assets = (_assets.folder, _assets.lock_hash, _assets.megabytes) if _assets is not None else None
    return json.dumps([assets, sorted(_hashes.items())])


def on_env_get_outdated(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """Recipe pages to read again because the assets or the runner's scripts changed since."""
    now = _written_with()
    before = getattr(env, STORE.key + "_with", None)
    setattr(env, STORE.key + "_with", now)
    if before is None or before == now:
        return []
    return sorted(STORE.of(env))


def on_html_page_context(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: nodes.document | None
) -> None:
    if pagename in STORE.of(app.env):
        app.add_css_file("runner/runner.css")
        app.add_js_file("runner/runner.js", loading_method="defer")


def cookbook_wheel(package: Path, version: str) -> tuple[str, bytes]:
    """A wheel of the recipe library (``src/sqlalchemy_cookbook``, as the source being documented has it).

    Built the same way every time (fixed dates, sorted names); its build tag is a hash of its
    contents, so a changed library gets a new URL and no browser cache serves the old one.
    """
    name = "sqlalchemy_cookbook"
    dist_info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {}
    for source in sorted(package.iterdir()):
        if source.name == "py.typed" or source.suffix == ".py":
            files[f"{name}/{source.name}"] = source.read_bytes()
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: sqlalchemy-cookbook\nVersion: {version}\n"
        f"Summary: The SQLAlchemy ORM Cookbook's recipe library (for the site's in-browser Run)\n"
        f"Requires-Dist: SQLAlchemy>=2.0,<2.2\n"
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: cookbook_site.run\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{dist_info}/top_level.txt"] = f"{name}\n".encode()
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    wheel = buffer.getvalue()
    build = "0" + hashlib.sha256(wheel).hexdigest()[:12]  # a wheel build tag starts with a digit
    return f"{name}-{version}-{build}-py3-none-any.whl", wheel


@dataclass
class Assets:
    """What goes into the site's ``_pyodide/<key>/`` folder."""

    #: The fetched assets (``make pyodide``).
    source: Path
    #: The folder in the output, named after what was fetched, so a new fetch gets new URLs.
    folder: str
    #: The recipe library's wheel: its name and bytes.
    wheel_name: str
    wheel: bytes
    #: The site's lock file: the fetched one, plus the recipe library.
    lock: str

    @classmethod
    def prepare(cls, source: Path, package: Path, version: str) -> Assets | None:
        if not (source / "pyodide-lock.json").is_file():
            return None
        fetched = (source / "pyodide-lock.json").read_bytes() + (source / "manifest.json").read_bytes()
        folder = f"{ASSETS_FOLDER}/{PYODIDE_VERSION}-{hashlib.sha256(fetched).hexdigest()[:10]}"
        wheel_name, wheel = cookbook_wheel(package, version)
        lock = json.loads((source / "pyodide-lock.json").read_text(encoding="utf-8"))
        lock["packages"]["sqlalchemy-cookbook"] = {
            "name": "sqlalchemy-cookbook",
            "version": version,
            "file_name": wheel_name,
            "install_dir": "site",
            "sha256": hashlib.sha256(wheel).hexdigest(),
            "package_type": "package",
            "imports": ["sqlalchemy_cookbook"],
            "depends": ["sqlalchemy"],
            "unvendored_tests": False,
        }
        return cls(source, folder, wheel_name, wheel, json.dumps(lock, indent=1) + "\n")

    @property
    def megabytes(self) -> int:
        """What a reader's first Run downloads, rounded to whole megabytes."""
        fetched = [p for p in self.source.iterdir() if p.is_file() and p.name != "manifest.json"]
        return round((sum(p.stat().st_size for p in fetched) + len(self.wheel)) / 1e6)

    @property
    def lock_hash(self) -> str:
        return hashlib.sha256(self.lock.encode()).hexdigest()[:12]

    def write(self, out: Path) -> None:
        """Copy the assets into the site, leaving files that are already the same alone."""
        root = out / ASSETS_FOLDER
        target = out / self.folder
        if root.is_dir():
            for old in root.iterdir():
                if old != target:
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
        target.mkdir(parents=True, exist_ok=True)
        made = {"pyodide-lock.json": self.lock.encode(), self.wheel_name: self.wheel}
        copied = {p.name for p in self.source.iterdir() if p.is_file()} - {"manifest.json", "pyodide-lock.json"}
        for old in target.iterdir():
            if old.name not in copied and old.name not in made:
                old.unlink()
        for name in sorted(copied):
            there = target / name
            if not (there.is_file() and filecmp.cmp(self.source / name, there, shallow=True)):
                shutil.copy2(self.source / name, there)
        for name, data in made.items():
            there = target / name
            if not there.is_file() or there.read_bytes() != data:
                there.write_bytes(data)


_assets: Assets | None = None


def on_builder_inited(app: Sphinx) -> None:
    global _assets
    if app.builder.format != "html":
        return
    app.config.html_static_path.append(str(STATIC))
    for key, name in ON_DEMAND.items():
        _hashes[key] = hashlib.sha256((STATIC / "runner" / name).read_bytes()).hexdigest()[:12]
    confdir = Path(app.confdir)
    source = confdir / cast(str, app.config.cookbook_runner_assets)
    library = confdir / cast(str, app.config.cookbook_library)
    _assets = Assets.prepare(source, library, cast(str, app.config.release) or "0")
    if _assets is None:
        logger.warning(
            "runner: no Pyodide in %s: run `make pyodide` (or `python -m cookbook_site.pyodide_assets`) "
            "before building; without it, Run tells readers that Python was not built with the site",
            source,
            type="runner",
            subtype="assets",
        )
    else:
        _hashes["lock"] = _assets.lock_hash


def on_build_finished(app: Sphinx, exception: BaseException | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    for docname, blocks in STORE.of(app.env).items():
        if docname not in app.env.all_docs:
            continue
        path = out / OUTPUT_FOLDER / f"{docname}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != blocks:
            path.write_text(blocks, encoding="utf-8")
    if _assets is not None:
        _assets.write(out)


def setup(app: Sphinx) -> dict[str, Any]:
    # The pages it reads are MyST with sphinx-design tabs.
    app.setup_extension("myst_parser")
    app.setup_extension("sphinx_design")
    # Both relative to conf.py's folder; conf.py sets them.
    app.add_config_value("cookbook_runner_assets", "docs/_pyodide/dist", "html", [str])
    app.add_config_value("cookbook_library", "src/sqlalchemy_cookbook", "html", [str])
    add_html_only_node(app, runner_data, visit_runner_data_html)
    app.connect("builder-inited", on_builder_inited)
    app.connect("env-get-outdated", on_env_get_outdated)
    app.connect("doctree-read", on_doctree_read)
    app.connect("html-page-context", on_html_page_context)
    STORE.connect(app)
    app.connect("build-finished", on_build_finished)
    return {"version": "1", "env_version": 1, "parallel_read_safe": True, "parallel_write_safe": True}
