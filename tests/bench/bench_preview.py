"""The live preview: from saving a page to the browser showing the edit, as ``make serve`` runs it.

The serve command is read from the Makefile's ``serve`` recipe (so this measures what authors
run), started on a copy of the site (:class:`tests.browser.site.SiteCopy`) and a free port; a
headless Chromium opens a recipe page; each round adds a sentence to that page's source and
times until the page, reloaded by the preview, shows it.  For comparison the same is measured
with plain sphinx-autobuild, which starts a new Python for every rebuild.  Target (issue 19):
under 1 s.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.browser.site import ROOT, SiteCopy, chromium, missing

PAGE = "transactions/delete-reinsert"
ROUNDS = 5
#: What the Makefile's variables stand for here; the output folder and port are the bench's own.
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


def measure(module: str | None) -> list[float]:
    """Seconds from each save to the page showing it, over ROUNDS edits."""
    with tempfile.TemporaryDirectory(prefix="cookbook-preview-bench-") as folder:
        site = SiteCopy(Path(folder))
        with serving(site, module) as (base, _), chromium() as (_, browser):
            times = []
            tab = browser.new_page()
            tab.goto(f"{base}{PAGE}.html")
            for round_ in range(ROUNDS):
                time.sleep(1.5)  # the watcher settles; the previous reload is done
                mark = f"Preview mark {round_} {time.time_ns()}."
                started = time.perf_counter()
                site.edit(PAGE, "\n## ", f"\n{mark}\n\n## ")
                tab.wait_for_function(
                    "mark => document.body !== null && document.body.innerText.includes(mark)",
                    arg=mark,
                    polling=10,
                    timeout=60_000,
                )
                times.append(time.perf_counter() - started)
            return times


def main() -> None:
    reason = missing()
    if reason:
        print(f"   live preview not measured: {reason}")
        return
    words = serve_recipe()
    served_by = words[words.index("-m") + 1]
    for module, label in ((None, f"make serve ({served_by})"), ("sphinx_autobuild", "plain sphinx-autobuild")):
        if module == served_by:
            continue
        times = measure(module)
        print(
            f"   {label}: an edit to {PAGE}.md shows in the browser after "
            f"{min(times):.2f} s best, {statistics.median(times):.2f} s median of {len(times)} "
            f"({', '.join(f'{t:.2f}' for t in times)}) (target < 1 s)",
            flush=True,
        )
