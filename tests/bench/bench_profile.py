"""Where the time goes: a profile of the cold build and of the pages under Sybil (SQLite).

Each is run once under cProfile in a fresh Python; the summary is the time spent in each
package's own code (its functions' self time, summed), then the functions with the most.
"""

from __future__ import annotations

import os
import pstats
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP = 12


def owner(filename: str) -> str:
    """The package a function's file belongs to (a standard-library module by name)."""
    found = re.search(r"site-packages/([^/]+)", filename)
    if found:
        return found.group(1).removesuffix(".py")
    if "cookbook_site" in filename:
        return "cookbook_site"
    if "/tests/" in filename:
        return "tests (harness)"
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (compile, regex, pickle, ...)"
    return "stdlib " + Path(filename).stem


def summary(profile: Path) -> None:
    stats = pstats.Stats(str(profile))
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0.0
    for (filename, line, function), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[owner(filename)] += own
        by_function[f"{owner(filename)}: {function} ({Path(filename).name}:{line})"] += own
        total += own
    print(f"   {total:.1f} s profiled (cProfile roughly doubles it); self time by package:")
    for name, seconds in by_package.most_common(TOP):
        print(f"     {seconds:6.2f} s {100 * seconds / total:4.1f}%  {name}")
    print("   functions with the most self time:")
    for name, seconds in by_function.most_common(TOP):
        print(f"     {seconds:6.2f} s  {name}")


def profiled(args: list[str], env: dict[str, str] | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile"
        subprocess.run(
            [sys.executable, "-m", "cProfile", "-o", str(out), *args],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        summary(out)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print("   cold build (sphinx-build -E):")
        profiled(["-m", "sphinx", "-q", "-E", "-b", "html", "-c", ".", "docs", str(Path(tmp) / "html")])
    print("   pages under Sybil + pytest (SQLite, one process):")
    env = dict(os.environ, COOKBOOK_BACKENDS="sqlite")
    profiled(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "docs"], env)
