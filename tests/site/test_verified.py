"""What the site says it was verified on comes from the test runs' records, never typed in."""

import json
from pathlib import Path

from cookbook_site.verified import page_line, read_runs, summary

PAGE = "transactions/delete-reinsert"


def record(tmp_path: Path, series: str, version: str, pages: dict[str, dict[str, bool]], failed: str = "") -> None:
    data = {
        "runtime": {"SQLAlchemy": version, "Python": "3.11.7", "SQLite": "3.40.1"},
        "backends": {
            "sqlite": {"version": "3.40.1", "passed": failed != "sqlite"},
            "postgresql": {"version": "15.14", "passed": failed != "postgresql"},
            "mariadb": {"version": "10.11.14-MariaDB-0+deb12u2", "passed": failed != "mariadb"},
        },
        "pages": pages,
    }
    (tmp_path / "_build").mkdir(exist_ok=True)
    (tmp_path / "_build" / f"verified-{series}.json").write_text(json.dumps(data))


EVERYWHERE = "SQLite 3.40.1, PostgreSQL 15.14 and MariaDB 10.11.14"
ALL_PASSED = {PAGE: {"sqlite": True, "postgresql": True, "mariadb": True}}


def test_both_series_on_the_landing_page(tmp_path: Path) -> None:
    """Each series is listed with its exact release and every database's version."""
    record(tmp_path, "2.1", "2.1.9", ALL_PASSED)
    record(tmp_path, "2.0", "2.0.58", ALL_PASSED)
    assert [
        f"SQLAlchemy 2.1.9 on Python 3.11.7: every example passed on {EVERYWHERE}",
        f"SQLAlchemy 2.0.58 on Python 3.11.7: every example passed on {EVERYWHERE}",
    ] == summary(read_runs(tmp_path))


def test_a_series_without_a_record_is_said_not_run(tmp_path: Path) -> None:
    record(tmp_path, "2.1", "2.1.9", ALL_PASSED)
    assert "SQLAlchemy 2.0: not run before this build (CI runs it on every change)" == summary(read_runs(tmp_path))[1]


def test_a_failed_database_is_named(tmp_path: Path) -> None:
    record(tmp_path, "2.1", "2.1.9", ALL_PASSED, failed="mariadb")
    assert summary(read_runs(tmp_path))[0].endswith(
        "every example passed on SQLite 3.40.1 and PostgreSQL 15.14; examples failed on MariaDB"
    )


def test_the_line_under_a_page_title(tmp_path: Path) -> None:
    """Series that ran on the same databases share one sentence."""
    record(tmp_path, "2.1", "2.1.9", ALL_PASSED)
    record(tmp_path, "2.0", "2.0.58", ALL_PASSED)
    assert (
        "Verified with Session on SQLAlchemy 2.1.9 and 2.0.58,"
        " with SQLite 3.40.1, PostgreSQL 15.14 and MariaDB 10.11.14." == page_line(read_runs(tmp_path), PAGE)
    )


def test_series_that_ran_on_other_databases_are_said_apart(tmp_path: Path) -> None:
    record(tmp_path, "2.1", "2.1.9", ALL_PASSED)
    record(tmp_path, "2.0", "2.0.58", {PAGE: {"sqlite": True}})
    assert (
        "Verified with Session on SQLAlchemy 2.1.9 with SQLite 3.40.1, PostgreSQL 15.14 and MariaDB 10.11.14"
        " and SQLAlchemy 2.0.58 with SQLite 3.40.1." == page_line(read_runs(tmp_path), PAGE)
    )


def test_a_page_that_failed_says_where(tmp_path: Path) -> None:
    record(tmp_path, "2.1", "2.1.9", {PAGE: {"sqlite": True, "postgresql": False}})
    assert (
        "Verified with Session on SQLAlchemy 2.1.9, with SQLite 3.40.1. Failed on SQLAlchemy 2.1.9 on PostgreSQL."
        " Not run on SQLAlchemy 2.0 before this build." == page_line(read_runs(tmp_path), PAGE)
    )


def test_no_record_at_all(tmp_path: Path) -> None:
    assert "This page's examples were not run before this build." == page_line(read_runs(tmp_path), PAGE)


def test_a_page_with_asyncsession_tabs_counts_a_database_when_both_runs_passed(tmp_path: Path) -> None:
    """A page with Session and AsyncSession tabs runs twice on each database; both must pass."""
    both = {"sqlite": True, "sqlite-async": True, "postgresql": True, "postgresql-async": False}
    record(tmp_path, "2.1", "2.1.9", {PAGE: both})
    assert (
        "Verified with Session and AsyncSession on SQLAlchemy 2.1.9, with SQLite 3.40.1."
        " Failed on SQLAlchemy 2.1.9 on PostgreSQL. Not run on SQLAlchemy 2.0 before this build."
        == page_line(read_runs(tmp_path), PAGE, ("session", "async"))
    )


def test_an_async_page_says_asyncsession(tmp_path: Path) -> None:
    record(tmp_path, "2.1", "2.1.9", {PAGE: {"sqlite": True}})
    assert page_line(read_runs(tmp_path), PAGE, ("async",)).startswith(
        "Verified with AsyncSession on SQLAlchemy 2.1.9, with SQLite 3.40.1."
    )
