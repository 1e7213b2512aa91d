"""Wall time of the full matrix, and of the browser suite, on both cores as CI runs them.

The matrix is every page (a Session and an AsyncSession run each), the library's and the site's
tests, on every database that is up (SQLite, and PostgreSQL and MariaDB where their servers
answer), on SQLAlchemy 2.1 (``.venv``) and 2.0 (``.venv-sqlalchemy-2.0``, made by
``make test SQLALCHEMY=2.0``), with pytest-xdist as ``make test`` runs it.  The browser suite
is ``tests/browser`` on 2.1.  Each is run once: minutes, not a loop.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERIES = {"2.1": ROOT / ".venv", "2.0": ROOT / ".venv-sqlalchemy-2.0"}
PORTS = {"postgresql": 5432, "mariadb": 3306}
XDIST = ["-n", "auto", "--dist", "loadfile"]


def servers_up() -> list[str]:
    up = []
    for name, port in PORTS.items():
        try:
            socket.create_connection(("127.0.0.1", port), 2).close()
            up.append(name)
        except OSError:
            print(f"   {name}: no server on 127.0.0.1:{port}, not in the matrix")
    return up


def run(python: Path, args: list[str], backends: list[str]) -> tuple[float, str]:
    """Seconds and pytest's summary line."""
    env = dict(os.environ, COOKBOOK_BACKENDS=" ".join(backends))
    started = time.perf_counter()
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *XDIST, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    summary = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    said = summary[-1].strip("= ") if summary else f"exit {done.returncode}"
    if done.returncode != 0:
        said += f" (FAILED, exit {done.returncode})"
    return seconds, said


def main() -> None:
    backends = ["sqlite", *servers_up()]
    total = 0.0
    for series, venv in SERIES.items():
        python = venv / "bin" / "python"
        if not python.exists():
            print(f"   SQLAlchemy {series}: not measured, no {venv.name} (make test SQLALCHEMY={series} makes it)")
            continue
        args = ["docs", "src", "tests", "--ignore=tests/browser"]
        seconds, said = run(python, args, backends)
        total += seconds
        print(
            f"   matrix, SQLAlchemy {series} ({', '.join(backends)} x Session, AsyncSession): {seconds:.0f} s; {said}"
        )
    print(f"   matrix, both series: {total:.0f} s")
    seconds, said = run(SERIES["2.1"] / "bin" / "python", ["tests/browser"], ["sqlite"])
    print(f"   browser suite (tests/browser, Chromium): {seconds:.0f} s; {said}")
