"""Refresh the pinned intersphinx inventories the site builds against (``make inventories``).

The build reads these files instead of the network, so it stays offline and every link into
Python's and SQLAlchemy's documentation is still checked (``-n``).  Each inventory is taken from
the live site when it can be reached; otherwise it is made from what the package registries
ship: Python's from Debian's ``python3.X-doc`` package, SQLAlchemy's from the built HTML inside
its sdist (every API entry there carries its dotted name as an element id).
"""

from __future__ import annotations

import glob
import html
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

HERE = Path(__file__).parent
PYTHON_LIVE = "https://docs.python.org/3/objects.inv"
SQLALCHEMY_LIVE = "https://docs.sqlalchemy.org/en/{series}/objects.inv"
ROOT = HERE.parent.parent
PYTHON_DEBIAN = "/usr/share/doc/python3*/html/objects.inv"

ENTRY = re.compile(r'<dl class="py (?P<type>[a-z]+)">\s*<dt class="sig sig-object py" id="(?P<name>[^"]+)"')
MODULE = re.compile(r'<span id="module-(?P<name>[\w.]+)"></span>')
TITLE = re.compile(r"<title>\s*(?P<title>.*?)\s*(?:&mdash;|&#8212;|—).*?</title>", re.S)


def fetch(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            data: bytes = response.read()
    except OSError as exc:
        print(f"  {url}: not reachable ({exc.__class__.__name__}); using the local source")
        return None
    return data


def python_inventory() -> bytes:
    live = fetch(PYTHON_LIVE)
    if live:
        return live
    found = sorted(glob.glob(PYTHON_DEBIAN))
    if not found:
        sys.exit(
            f"no Python inventory: {PYTHON_LIVE} is unreachable and no {PYTHON_DEBIAN}"
            " (install it with: apt-get install python3-doc)"
        )
    return Path(found[-1]).read_bytes()


def pinned(requirements: Path) -> str:
    """The SQLAlchemy release a requirements file pins (``SQLAlchemy==X.Y.Z``)."""
    found = re.search(r"(?im)^sqlalchemy(?:\[[^\]]*\])?==(\S+)", requirements.read_text())
    if found is None:
        sys.exit(f"{requirements} pins no SQLAlchemy release")
    return found.group(1)


def sqlalchemy_inventory(version: str) -> bytes:
    """The inventory of SQLAlchemy's documentation for the series of ``version`` (2.1.9 -> /en/21/)."""
    series = "".join(version.split(".")[:2])
    live = fetch(SQLALCHEMY_LIVE.format(series=series))
    if live:
        return live
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-binary=:all:",
                "--no-deps",
                f"sqlalchemy=={version}",
                "-d",
                tmp,
            ],
            check=True,
        )
        (sdist,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (doc,) = Path(tmp).glob("*/doc")
        return build_inventory(doc, "SQLAlchemy", ".".join(version.split(".")[:2]))


def build_inventory(doc: Path, project: str, version: str) -> bytes:
    lines: dict[tuple[str, str], str] = {}
    for page in sorted(doc.rglob("*.html")):
        rel = page.relative_to(doc).as_posix()
        if rel.startswith(("_", "build/")) or rel in {"genindex.html", "search.html"}:
            continue
        text = page.read_text(encoding="utf-8", errors="replace")
        docname = rel.removesuffix(".html")
        title = TITLE.search(text)
        shown = html.unescape(title.group("title")).strip() if title else docname
        lines[(docname, "std:doc")] = f"{docname} std:doc -1 {rel} {shown}"
        for m in MODULE.finditer(text):
            name = m.group("name")
            lines.setdefault((name, "py:module"), f"{name} py:module 0 {rel}#module-$ -")
        for m in ENTRY.finditer(text):
            name, kind = m.group("name"), m.group("type")
            # The first page that documents a name is its home; later ones are re-exports.
            lines.setdefault((name, f"py:{kind}"), f"{name} py:{kind} 1 {rel}#$ -")
    body = "\n".join(sorted(lines.values())) + "\n"
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    print(f"  made {len(lines)} entries from {doc}")
    return header.encode() + zlib.compress(body.encode())


def main() -> None:
    made = {
        # The series each requirements file pins: 2.1 (the default) and 2.0.
        "python": python_inventory,
        "sqlalchemy": lambda: sqlalchemy_inventory(pinned(ROOT / "requirements.txt")),
        "sqlalchemy20": lambda: sqlalchemy_inventory(pinned(ROOT / "requirements-sqlalchemy-2.0.txt")),
    }
    for name, make in made.items():
        print(f"{name}.inv:")
        (HERE / f"{name}.inv").write_bytes(make())
    print(f"written to {HERE}")


if __name__ == "__main__":
    main()
