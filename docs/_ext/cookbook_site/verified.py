"""The cookbook site's own Sphinx extension (not part of the recipe library's API).

``{verified-with}`` renders the versions the examples were verified with: SQLAlchemy, Python
and SQLite read at build time, and each database server as recorded by the test run that
preceded the build (``_build/verified.json``, written by ``make test``).
"""

from __future__ import annotations

import json
import platform
import sqlite3
from importlib.metadata import version
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

# Read from the installed distribution: importing SQLAlchemy here would cost every build ~0.2 s.
SQLALCHEMY_VERSION = version("SQLAlchemy")

SERVERS = {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}


def record_path(app: Sphinx) -> Path:
    return Path(app.confdir) / "_build" / "verified.json"


def _read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class VerifiedWith(SphinxDirective):
    """A list: each runtime and database the examples ran on, with its version."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        path = record_path(self.env.app)
        self.env.note_dependency(str(path))
        record = _read_record(path)
        backends: dict[str, Any] = record.get("backends", {})
        ran_here = record.get("runtime", {}).get("SQLAlchemy") == SQLALCHEMY_VERSION

        items = [
            f"SQLAlchemy {SQLALCHEMY_VERSION}",
            f"Python {platform.python_version()}",
        ]
        sqlite = backends.get("sqlite")
        if ran_here and sqlite:
            state = "all examples passed" if sqlite["passed"] else "the run had failures"
            items.append(f"SQLite {sqlite['version']}: {state}")
        else:
            items.append(f"SQLite {sqlite3.sqlite_version}: not run before this build")
        for key, label in SERVERS.items():
            server = backends.get(key) if ran_here else None
            if server:
                state = "all examples passed" if server["passed"] else "the run had failures"
                items.append(f"{label} {server['version']}: {state}")
            else:
                items.append(f"{label}: not run before this build (CI runs it on every change)")

        bullets = nodes.bullet_list()
        for item in items:
            bullets += nodes.list_item("", nodes.paragraph(text=item))
        return [bullets]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("verified-with", VerifiedWith)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
