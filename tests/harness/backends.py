"""Which databases the examples run on, and a private database for every page and test module.

The list comes from ``COOKBOOK_BACKENDS`` (``make test BACKENDS="sqlite postgresql mariadb"``
sets it); SQLite alone when it is unset.  Server URLs default to the local servers and can be
overridden with ``COOKBOOK_POSTGRESQL_URL`` and ``COOKBOOK_MARIADB_URL``.

Every page or test module gets a fresh database of its own (a temporary directory on SQLite,
``CREATE DATABASE`` on the servers), dropped afterwards, so a second run against the same server
starts from the same state, and two runs at once do not meet.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from cookbook_site.page import BACKENDS as NAMES

DEFAULT_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mariadb+pymysql://root@127.0.0.1:3306/test",
}
URL_VARIABLES = {
    "postgresql": "COOKBOOK_POSTGRESQL_URL",
    "mariadb": "COOKBOOK_MARIADB_URL",
}
# Scratch databases are named cookbook_<pid>_<n>: a run can tell its own leftovers from
# another live run's and drop those whose process is gone.
PREFIX = "cookbook_"
_counter = itertools.count(1)


class BackendError(Exception):
    """A backend was named that does not exist or cannot be reached."""


def selected_names(value: str | None = None) -> list[str]:
    """The backends to run, from ``COOKBOOK_BACKENDS`` (space- or comma-separated)."""
    if value is None:
        value = os.environ.get("COOKBOOK_BACKENDS", "")
    names = [n for n in value.replace(",", " ").split() if n]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise BackendError(
            f"unknown backend {', '.join(map(repr, unknown))} in COOKBOOK_BACKENDS; "
            f"valid backends are: {', '.join(NAMES)}"
        )
    return list(dict.fromkeys(names)) or ["sqlite"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Backend:
    """One database the examples run on."""

    name: str
    server_url: URL | None = None
    version: str = ""
    scratch: list[str] = field(default_factory=list)

    @classmethod
    def from_name(cls, name: str) -> Backend:
        if name == "sqlite":
            return cls(name)
        raw = os.environ.get(URL_VARIABLES[name]) or DEFAULT_URLS[name]
        return cls(name, make_url(raw))

    @property
    def shown_url(self) -> str:
        if self.server_url is None:
            return "sqlite (temporary files)"
        return self.server_url.render_as_string(hide_password=True)

    def _admin(self) -> Engine:
        assert self.server_url is not None
        return create_engine(self.server_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")

    def check(self) -> str:
        """Connect once and read the server's version; the error names backend and URL."""
        if self.server_url is None:
            self.version = sqlite3.sqlite_version
            return self.version
        engine = self._admin()
        try:
            with engine.connect() as conn:
                if self.name == "postgresql":
                    self.version = conn.scalar(text("SHOW server_version")) or ""
                else:
                    self.version = conn.scalar(text("SELECT VERSION()")) or ""
                self._drop_orphans(conn)
        except Exception as exc:  # any driver error: say which backend and where
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(
                f"backend {self.name} is unreachable at {self.shown_url}: {reason}\n"
                f"(start the server, set {URL_VARIABLES[self.name]}, "
                f"or leave {self.name} out of BACKENDS)"
            ) from exc
        finally:
            engine.dispose()
        return self.version

    def _existing(self, conn: sqlalchemy.Connection) -> list[str]:
        if self.name == "postgresql":
            rows = conn.scalars(text("SELECT datname FROM pg_database"))
        else:
            rows = conn.scalars(text("SHOW DATABASES"))
        return [r for r in rows if r.startswith(PREFIX)]

    def _drop_orphans(self, conn: sqlalchemy.Connection) -> None:
        """Drop scratch databases left by runs on this machine whose process has died."""
        for name in self._existing(conn):
            try:
                pid = int(name.split("_")[1])
            except (IndexError, ValueError):
                continue
            if not _pid_alive(pid):
                self._drop(conn, name)

    def _drop(self, conn: sqlalchemy.Connection, name: str) -> None:
        if self.name == "postgresql":
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        # MariaDB waits for open transactions on the database: end them first.
        ids = conn.scalars(
            text("SELECT id FROM information_schema.processlist WHERE db = :db AND id <> CONNECTION_ID()"),
            {"db": name},
        ).all()
        for pid in ids:
            try:
                conn.execute(text(f"KILL {int(pid)}"))
            except sqlalchemy.exc.DBAPIError:
                pass  # it ended on its own in the meantime
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))

    @contextmanager
    def database(self) -> Iterator[URL]:
        """A fresh, empty database, dropped on exit; yields the URL to reach it."""
        if self.server_url is None:
            tmp = tempfile.mkdtemp(prefix=PREFIX)
            try:
                yield make_url(f"sqlite:///{tmp}/scratch.db")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return
        name = f"{PREFIX}{os.getpid()}_{next(_counter)}"
        admin = self._admin()
        try:
            with admin.connect() as conn:
                if self.name == "postgresql":
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                else:
                    conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            self.scratch.append(name)
            try:
                yield self.server_url.set(database=name)
            finally:
                with admin.connect() as conn:
                    self._drop(conn, name)
                self.scratch.remove(name)
        finally:
            admin.dispose()


def runtime_versions() -> dict[str, str]:
    """The versions read off this run (never typed in)."""
    return {
        "SQLAlchemy": sqlalchemy.__version__,
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
    }


def summary_line(selected: list[str], ran: list[str], failed: list[str]) -> str:
    """``backends: sqlite ran; postgresql, mariadb not configured`` (what the SQLAlchemy run covered)"""
    groups = {
        "ran": [n for n in ran if n not in failed],
        "ran with failures": list(failed),
        "selected, but no test of theirs ran": [n for n in selected if n not in ran],
        "not configured": [n for n in NAMES if n not in selected],
    }
    said = "; ".join(f"{', '.join(names)} {what}" for what, names in groups.items() if names)
    return f"backends: {said} (SQLAlchemy {sqlalchemy.__version__})"


def write_record(
    path: Path, backends: list[Backend], failed: list[str], pages: dict[str, dict[str, bool]] | None = None
) -> None:
    """What this run verified, for the landing page and each page's line under its title (read
    by the site at build time): the versions, each backend's result, and each page's result per
    backend (``{"transactions/delete-reinsert": {"sqlite": true}}``)."""
    record = {
        "runtime": runtime_versions(),
        "backends": {b.name: {"version": b.version, "passed": b.name not in failed} for b in backends},
        "pages": pages or {},
        "argv": sys.argv[1:],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
