"""``python -m tests.harness.leftovers [BACKEND ...]``: what the test runs left on the servers.

Every page and test module works in a scratch database of its own and drops it (see
:mod:`tests.harness.backends`), so after a run the servers hold what they held before: no
``cookbook_*`` database and nothing in the database the URL names (``test``).  CI runs this after
each series' run: it exits 1 and lists what it found, naming the backend and URL.
"""

from __future__ import annotations

import sys

from sqlalchemy import inspect, text

from tests.harness.backends import Backend, BackendError, selected_names


def left_on(backend: Backend) -> list[str]:
    """What a run left on one server: scratch databases, and the named database's tables, views
    and sequences (PostgreSQL's types too)."""
    engine = backend._admin()
    try:
        with engine.connect() as conn:
            found = [f"database {name}" for name in backend._existing(conn)]
            inspector = inspect(conn)
            found += [f"table {name}" for name in inspector.get_table_names()]
            found += [f"view {name}" for name in inspector.get_view_names()]
            if backend.name == "postgresql":
                found += [f"sequence {name}" for name in inspector.get_sequence_names()]
                types = conn.scalars(
                    text(
                        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                        "WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c') "
                        "AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid)"
                    )
                )
                found += [f"type {name}" for name in types]
    finally:
        engine.dispose()
    return found


def main(argv: list[str]) -> int:
    try:
        names = selected_names(" ".join(argv))
    except BackendError as exc:
        print(exc, file=sys.stderr)
        return 2
    left = 0
    for name in names:
        if name == "sqlite":
            continue  # temporary files, removed with their folders
        backend = Backend.from_name(name)  # not check(): it drops what dead runs left, which is what we look for
        try:
            found = left_on(backend)
        except Exception as exc:  # noqa: BLE001 - any driver error: say which backend and where
            print(f"{name} is unreachable at {backend.shown_url}: {exc}", file=sys.stderr)
            return 2
        left += len(found)
        said = "nothing left" if not found else "LEFT BEHIND: " + ", ".join(found)
        print(f"{name} ({backend.shown_url}): {said}")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
