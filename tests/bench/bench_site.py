"""The site's own costs: cold build, one-page rebuild, and the Sybil run against plain Python.

Targets (issues 2 and 19, on a 2-core machine): build ratio <= 1.5 against a bare Sphinx +
myst-parser build of the same pages; one-page rebuild < 1 s (bench_preview measures it as the
live preview shows it; the figure here is the ``sphinx-build`` alone); Sybil run <= 1.5 x the
same examples run and checked, in one process, by the browser's runner on CPython
(cookbook_runner.py: the one runner outside Sybil), each page once per API, as the tests run it.

A bare Sphinx + myst-parser build does not know sphinx-design's directives, so it leaves out
everything inside a tab-set (most of the examples, now that most pages have Session and
AsyncSession tabs); the cold build is also compared with myst-parser + sphinx-design, the
least that builds the same content, and each build's count of code blocks is shown.
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
extensions = EXTENSIONS
myst_enable_extensions = ["colon_fence", "deflist"]
exclude_patterns = ["_build", "**/_*", "conftest.py"]
suppress_warnings = ["*"]
"""

BASELINES = {"myst-parser": ["myst_parser"], "myst-parser + sphinx-design": ["myst_parser", "sphinx_design"]}

PLAIN_RUNNER = r"""
import asyncio, json, sys
from pathlib import Path
from cookbook_site import page as page_model
from cookbook_site.run import STATIC

sys.path.insert(0, str(STATIC / "runner"))
import cookbook_runner  # the runner Run uses in the browser, here on CPython

for path in page_model.pages(Path("docs")):
    model = page_model.read(path)
    for api in page_model.apis_of(model):  # a run per API, as the tests run it
        examples = list(page_model.examples_on(model, "sqlite", api=api))
        cookbook_runner.start(str(path))
        page = cookbook_runner._page
        if api == "async" or any(example.awaits for example in examples):
            page.loop = asyncio.new_event_loop()  # as python -m asyncio: every statement in one loop
        for example in examples:
            given = {"line": example.line, "source": example.source, "want": example.want,
                     "exc_msg": example.exc_msg, "flags": example.flags}
            result = page.doctest(given) if example.kind == "doctest" else page.code(given)
            if result["status"] not in ("match", "ran"):
                sys.exit(f"{path}:{example.line} ({api}): {result}")
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


def code_blocks(out: Path) -> int:
    """How many highlighted code blocks a build wrote."""
    return sum(page.read_text(encoding="utf-8").count('<div class="highlight">') for page in out.rglob("*.html"))


def main() -> None:
    py = sys.executable
    pages = len(page_model.pages(DOCS))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "site")
        site = best([py, "-m", "sphinx", "-q", "-E", "-b", "html", "-c", ".", "docs", str(out)])
        print(f"   cold build of the site's {pages} pages: {site:.2f} s, {code_blocks(out)} code blocks")
        for name, extensions in BASELINES.items():
            conf, bare_out = Path(tmp, f"conf-{len(extensions)}"), Path(tmp, f"bare-{len(extensions)}")
            conf.mkdir()
            (conf / "conf.py").write_text(BARE_CONF.replace("EXTENSIONS", repr(extensions)))
            bare = best([py, "-m", "sphinx", "-q", "-E", "-b", "html", "-c", str(conf), "docs", str(bare_out)])
            print(
                f"   bare Sphinx + {name} on the same pages: {bare:.2f} s, {code_blocks(bare_out)} code blocks; "
                f"ratio {site / bare:.2f} (target <= 1.5)"
            )

        rebuild = best(
            [py, "-m", "sphinx", "-q", "-b", "html", "-n", "-c", ".", "docs", str(out)],
            before=lambda: os.utime(TOUCHED),
        )
        print(
            f"   sphinx-build after touching {TOUCHED.relative_to(ROOT)}: {rebuild:.2f} s "
            "(a new Python for the build, as sphinx-autobuild runs it; bench_preview times the live preview)"
        )

    env = dict(os.environ, COOKBOOK_BACKENDS="sqlite")
    sybil = best([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "docs"], env)
    plain = best([py, "-c", PLAIN_RUNNER], env)
    print(
        f"   pages under Sybil + pytest (SQLite, Session and AsyncSession runs, one process): {sybil:.2f} s; "
        f"the same examples run and checked by the browser's runner on CPython, in one process: {plain:.2f} s; "
        f"ratio {sybil / plain:.2f} (target <= 1.5)"
    )
