"""The built site, served on 127.0.0.1, and a headless Chromium to read it with; and a copy of
the site to edit, built again or served by ``make serve``'s command.

Shared by the browser tests (tests/browser/), the site's tests (tests/site/), ``make screenshots``
and ``make bench``.
Nothing here reaches beyond the machine: the server listens on loopback only and Chromium
is started with every host but 127.0.0.1 unresolvable.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cookbook_site import page as page_model

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Response

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# Chromium as Debian ships it; Playwright drives it, and never downloads a browser of its own.
CHROMIUM_ENV = "COOKBOOK_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
REQUIRE_ENV = "COOKBOOK_REQUIRE_BROWSER"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Offline by construction: any host but the site's own fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def recipe_sources() -> list[Path]:
    """Every recipe page's Markdown source, in order (the page model decides which are recipes)."""
    return page_model.recipe_pages(DOCS)


def runnable_recipe(runs: int = 3) -> Path:
    """The first recipe page with at least ``runs`` blocks that Run can run in the browser (some
    pages need a server, threads or a web framework, which Python in the browser has not)."""
    from cookbook_site.run import runner_blocks

    for source in recipe_sources():
        if len(runner_blocks(page_model.read(source).examples)[1]) >= runs:
            return source
    raise LookupError(f"no recipe page has {runs} blocks Run can run")


def html_name(source: Path) -> str:
    """``transactions/delete-reinsert.md`` -> ``transactions/delete-reinsert.html``."""
    return source.relative_to(DOCS).with_suffix(".html").as_posix()


def build_site(out: Path) -> Path:
    """Build the site into ``out`` (not strict: ``make test`` runs the strict build) and return it."""
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", "-c", ".", "docs", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the site did not build (sphinx exit {done.returncode}):\n{done.stdout}")
    return out


def search_index(site: Path) -> dict[str, Any]:
    """The search index a build wrote (``searchindex.js``), as data."""
    text = (site / "searchindex.js").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text[text.index("(") + 1 : text.rindex(")")])
    return data


def indexed_words(data: dict[str, Any], docname: str) -> list[str]:
    """The words, and title words, the search index gives a page."""
    number = data["docnames"].index(docname)
    return [
        word
        for kind in ("terms", "titleterms")
        for word, files in data[kind].items()
        if number in (files if isinstance(files, list) else [files])
    ]


class SiteCopy:
    """A copy of the site in ``folder`` (its pages, conf.py and the changelog it includes; the
    recipe library and the Pyodide assets as links), to edit and build again without touching
    the real pages: the incremental-build tests and ``make bench``'s live preview use it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.docs = folder / "docs"
        self.out = folder / "_build" / "html"
        shutil.copy(ROOT / "conf.py", folder / "conf.py")
        shutil.copy(ROOT / "CHANGELOG.md", folder / "CHANGELOG.md")  # the changelog page includes it
        shutil.copytree(DOCS, self.docs, ignore=shutil.ignore_patterns("_pyodide"))
        (self.docs / "_pyodide").symlink_to(DOCS / "_pyodide")
        (folder / "src").symlink_to(ROOT / "src")

    def source(self, docname: str) -> Path:
        return self.docs / f"{docname}.md"

    def edit(self, docname: str, old: str, new: str) -> None:
        path = self.source(docname)
        text = path.read_text(encoding="utf-8")
        if old not in text:
            raise ValueError(f"{old!r} is not on {docname}")
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def html(self, docname: str) -> str:
        return (self.out / f"{docname}.html").read_text(encoding="utf-8")


# --- make serve, on a copy of the site -------------------------------------------------------

#: What the Makefile's variables stand for here; the output folder and port are the caller's.
MAKE_VARIABLES = {"$(SPHINX_ARGS)": "-c . docs", "$(HOST)": "127.0.0.1"}


def serve_recipe() -> list[str]:
    """The Makefile's ``serve`` command, as words, with ``$(PY)`` and ``$(PORT)`` left to fill in."""
    recipe = re.search(r"^serve:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M)
    if recipe is None:
        raise LookupError("the Makefile has no serve recipe")
    line = recipe.group(1)
    for variable, value in MAKE_VARIABLES.items():
        line = line.replace(variable, value)
    return line.split()


def command(words: list[str], module: str | None, out: Path, port: int) -> list[str]:
    """The serve command with this Python, output folder and port (and another module, if named)."""
    filled = [sys.executable if w == "$(PY)" else str(port) if w == "$(PORT)" else w for w in words]
    filled = [str(out) if w == "_build/html" else w for w in filled]
    if module is not None:
        filled[filled.index("-m") + 1] = module
    return filled


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_served(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the preview exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the preview did not serve {url} within 180 s:\n{log.read_text()[-3000:]}")


@contextmanager
def serving(site: SiteCopy, module: str | None = None) -> Iterator[tuple[str, Path]]:
    """The Makefile's serve command (or another module) on a copy of the site and a free port,
    while the block runs: the site's address and the server's log."""
    port = free_port()
    log = site.folder / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command(serve_recipe(), module, site.out, port),
            cwd=site.folder,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_until_served(base, process, log)
        yield base, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


class _Handler(SimpleHTTPRequestHandler):
    """Static files with the types a browser needs, and the site's 404 page for what is missing."""

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".mjs": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".json": "application/json",
        ".svg": "image/svg+xml",
        ".py": "text/x-python; charset=utf-8",
        ".wasm": "application/wasm",  # anything else and WebAssembly streaming refuses it
        ".whl": "application/zip",
        ".zip": "application/zip",
        ".tar": "application/x-tar",
    }

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        page = Path(str(self.directory)) / "404.html"
        if code != HTTPStatus.NOT_FOUND or not page.is_file():
            super().send_error(code, message, explain)
            return
        body = page.read_bytes()
        self.send_response(code)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server:
    """A threaded HTTP server for one folder, on 127.0.0.1 and a free port."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"http://{self.host}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="cookbook-site", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def is_local(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme not in ("http", "https", "ws", "wss") or parts.netloc == self.host


def chromium_path() -> str | None:
    """Where Chromium is, or None."""
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        return named if os.access(named, os.X_OK) else None
    if os.access(DEFAULT_CHROMIUM, os.X_OK):
        return DEFAULT_CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    """Why the browser tests cannot run here, with how to fix it; None when they can."""
    try:
        import playwright.sync_api  # noqa: F401 - imported only to learn whether it is installed
    except ImportError:
        return "the Python package 'playwright' is not installed: run `make` (it installs requirements.txt into .venv)"
    if chromium_path() is None:
        where = os.environ.get(CHROMIUM_ENV) or f"{DEFAULT_CHROMIUM} or `chromium` on PATH"
        return (
            f"Chromium not found ({where}): install Debian's with `sudo apt-get install chromium` "
            f"(or set {CHROMIUM_ENV} to a Chromium binary); never `playwright install`"
        )
    return None


@contextmanager
def chromium() -> Iterator[tuple[Playwright, Browser]]:
    """A headless Chromium, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield playwright, browser
        finally:
            browser.close()


@contextmanager
def served_site(out: Path | None = None) -> Iterator[tuple[Path, Server]]:
    """Build the site (into ``out``, or a temporary folder) and serve it while the block runs."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cookbook-site-") as folder:
        site = build_site(out or Path(folder) / "html")
        with Server(site) as server:
            yield site, server


# --- Watching a page ---------------------------------------------------------------------------

KINDS = {"document": "HTML", "stylesheet": "CSS", "script": "JS", "font": "fonts", "image": "images"}


class Watch:
    """Everything a page does on the network and the console, and what went wrong.

    Attach it before the page navigates: a console error, an uncaught exception, a failed
    request, an HTTP error and a request to any host but the site's own are each a problem.
    """

    def __init__(self, page: Page, server: Server) -> None:
        self.page = page
        self.server = server
        self.problems: list[str] = []
        self.responses: list[Response] = []
        self.pending: set[Request] = set()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught error: {error}"))
        page.on("request", self._request)
        page.on("requestfinished", self._finished)
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    # Handlers are Python functions: Playwright cannot take a builtin method like set.add.
    def _finished(self, request: Request) -> None:
        self.pending.discard(request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text} ({message.location.get('url', '')})")

    def _request(self, request: Request) -> None:
        self.pending.add(request)
        if not self.server.is_local(request.url):
            self.problems.append(f"request to another host: {request.url}")

    def _failed(self, request: Request) -> None:
        self.pending.discard(request)
        self.problems.append(f"failed request: {request.url} ({request.failure})")

    def _response(self, response: Response) -> None:
        self.responses.append(response)
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def goto(self, path: str) -> Response | None:
        """Open a page of the site (a path relative to its root) and wait until it has settled."""
        response = self.page.goto(self.server.url + path.lstrip("/"), wait_until="load")
        self.settle()
        return response

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until the requests the page started (scripts that load others, too) are done."""
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(20)
            if self.pending:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 0.1:
                return

    def weight(self) -> dict[str, int]:
        """Bytes of each kind the page loaded (uncompressed bodies, as the browser got them)."""
        weight = dict.fromkeys([*KINDS.values(), "other"], 0)
        for response in self.responses:
            if response.status < 300 and response.request.method == "GET":
                kind = KINDS.get(response.request.resource_type, "other")
                weight[kind] += len(response.body())
        return weight
