"""The site's own costs: cold build, one-page rebuild, and the Sybil run against plain Python.

Targets (issue 2, on a 2-core machine): build ratio <= 1.5 against a bare Sphinx + myst-parser
build of the same pages; one-page rebuild < 1 s; Sybil run <= 1.5 x the same examples run and checked, in one
process, by the browser's runner on CPython (cookbook_runner.py: the one runner outside Sybil).
Each figure is the best of a few runs, to keep noise from other work out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cookbook_site import page as page_model

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TOUCHED = DOCS / "transactions" / "delete-reinsert.md"
ROUNDS = 3

BARE_CONF = """
extensions = ["myst_parser"]
myst_enable_extensions = ["colon_fence", "deflist"]
exclude_patterns = ["_build", "**/_*", "conftest.py"]
suppress_warnings = ["*"]
"""

PLAIN_RUNNER = r"""
import asyncio, json, sys
from pathlib import Path
from cookbook_site import page as page_model
from cookbook_site.run import STATIC

sys.path.insert(0, str(STATIC / "runner"))
import cookbook_runner  # the runner Run uses in the browser, here on CPython

for path in page_model.pages(Path("docs")):
    cookbook_runner.start(str(path))
    page = cookbook_runner._page
    model = page_model.read(path)
    if any(example.awaits for example in model.examples):
        page.loop = asyncio.new_event_loop()  # as python -m asyncio: every statement in one loop
    for example in page_model.examples_on(model, "sqlite"):
        given = {"line": example.line, "source": example.source, "want": example.want,
                 "exc_msg": example.exc_msg, "flags": example.flags}
        result = page.doctest(given) if example.kind == "doctest" else page.code(given)
        if result["status"] not in ("match", "ran"):
            sys.exit(f"{path}:{example.line}: {result}")
cookbook_runner.start("end")
"""


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def best(command: list[str], env: dict[str, str] | None = None, before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(ROUNDS):
        if before:
            before()
        times.append(timed(command, env))
    return min(times)


def main() -> None:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        out, bare_out, bare_conf = Path(tmp, "site"), Path(tmp, "bare"), Path(tmp, "bareconf")
        bare_conf.mkdir()
        (bare_conf / "conf.py").write_text(BARE_CONF)

        site = best([py, "-m", "sphinx", "-q", "-E", "-b", "html", "-c", ".", "docs", str(out)])
        bare = best([py, "-m", "sphinx", "-q", "-E", "-b", "html", "-c", str(bare_conf), "docs", str(bare_out)])
        pages = len(page_model.pages(DOCS))
        print(
            f"cold build: {site:.2f} s; bare Sphinx + myst-parser on the same {pages} pages: {bare:.2f} s; "
            f"ratio {site / bare:.2f} (target <= 1.5)"
        )

        rebuild = best(
            [py, "-m", "sphinx", "-q", "-b", "html", "-c", ".", "docs", str(out)],
            before=lambda: os.utime(TOUCHED),
        )
        print(
            f"rebuild after touching {TOUCHED.relative_to(ROOT)}: {rebuild:.2f} s "
            "(the command sphinx-autobuild runs; target < 1 s)"
        )

    env = dict(os.environ, COOKBOOK_BACKENDS="sqlite")
    sybil = best([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "docs"], env)
    plain = best([py, "-c", PLAIN_RUNNER], env)
    print(
        f"pages under Sybil + pytest (SQLite): {sybil:.2f} s; the same examples run and checked by the "
        f"browser's runner on CPython, in one process: {plain:.2f} s; ratio {sybil / plain:.2f} (target <= 1.5)"
    )
