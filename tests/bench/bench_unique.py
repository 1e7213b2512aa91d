"""UniqueObject: statements per call, and races between workers, on every backend that is up.

Statements are counted with a ``before_cursor_execute`` listener (one per statement sent, one per
page when insertmanyvalues splits an INSERT).  Targets: 0 on a cache hit, at most 2 on a miss,
and a constant of at most 3 for a bulk call of 10, 100 or 1000 new keys.

The races: N workers (threads, then processes) each make M calls, every call its own transaction,
over K keys that all workers share; every worker waits at a barrier before each call, and every
INSERT is held back 5 ms so that the others' SELECTs miss the row too.  A correct recipe creates K
rows and surfaces no error; "INSERTs sent" above K shows how many calls lost a race and recovered.
The same race run with the plain SELECT-then-add recipe shows what the test catches.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, create_engine, event, func, select
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from cookbook_site.page import BACKENDS
from sqlalchemy_cookbook import UniqueObject
from tests.harness.backends import Backend, BackendError
from tests.library.statements import statements

if TYPE_CHECKING:  # ForkContext exists only where fork does (not on Windows)
    from multiprocessing.context import ForkContext, SpawnContext

WORKERS, CALLS, KEYS = 8, 25, 5
BULK_SIZES = (10, 100, 1000, 10_000)


class Base(DeclarativeBase):
    pass


class Keyword(UniqueObject, Base):
    __tablename__ = "keyword"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


def naive(session: Session, name: str) -> Keyword:
    """SELECT, and add a new object if there is no row: what the 1.x recipe did on a cache miss."""
    keyword = session.scalars(select(Keyword).filter_by(name=name)).first()
    if keyword is None:
        keyword = Keyword(name=name)
        session.add(keyword)
        session.flush()
    return keyword


def unique(session: Session, name: str) -> Keyword:
    return Keyword.as_unique(session, name=name)


RECIPES: dict[str, Callable[[Session, str], Keyword]] = {"UniqueObject": unique, "naive": naive}


def fresh(engine: Engine) -> None:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)


def statement_counts(engine: Engine) -> list[str]:
    fresh(engine)
    lines = []
    with Session(engine) as session:
        session.connection()
        with statements(engine) as sent:
            Keyword.as_unique(session, name="miss")
        lines.append(f"miss (new key): {len(sent)} statements")
        with statements(engine) as sent:
            started = time.perf_counter()
            for _ in range(10_000):
                Keyword.as_unique(session, name="miss")
            per_hit = (time.perf_counter() - started) / 10_000
        lines.append(f"cache hit: {len(sent) // 10_000} statements ({per_hit * 1e6:.1f} µs per call)")
        session.commit()
    with Session(engine) as session:
        session.connection()
        with statements(engine) as sent:
            Keyword.as_unique(session, name="miss")
        lines.append(f"row exists, not cached: {len(sent)} statement")
        for size in BULK_SIZES:
            rows = [{"name": f"bulk{size}-{i}"} for i in range(size)]
            with statements(engine) as sent:
                started = time.perf_counter()
                Keyword.as_unique_all(session, rows)
                took = time.perf_counter() - started
            lines.append(f"bulk of {size:>6,} new keys: {len(sent)} statements ({took * 1000:.0f} ms)")
        with statements(engine) as sent:
            Keyword.as_unique_all(session, [{"name": f"bulk1000-{i}"} for i in range(1000)])
        lines.append(f"bulk of  1,000 cached keys: {len(sent)} statements")
        session.commit()
    return lines


def slow_inserts(engine: Engine) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _wait(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT"):
            time.sleep(0.005)


def worker(engine: Engine, barrier: Any, recipe: str) -> list[str]:
    """M calls, each its own transaction; returns the errors they raised."""
    errors: list[str] = []
    for call in range(CALLS):
        try:
            barrier.wait(timeout=60)
            with Session(engine) as session:
                RECIPES[recipe](session, f"key{call % KEYS}")
                session.commit()
        except SQLAlchemyError as exc:
            errors.append(type(exc).__name__)
    return errors


def process_worker(url: str, barrier: Any, results: Any, recipe: str) -> None:
    engine = create_engine(url)
    slow_inserts(engine)
    try:
        with statements(engine) as sent:
            errors = worker(engine, barrier, recipe)
        results.put((sum(s.startswith("INSERT") for s in sent), errors))
    finally:
        engine.dispose()


def race(engine: Engine, url: URL, how: str, recipe: str) -> str:
    fresh(engine)
    started = time.perf_counter()
    if how == "threads":
        slow_inserts(engine)
        barrier: Any = threading.Barrier(WORKERS)
        outcomes: list[tuple[int, list[str]]] = []
        threads = [
            threading.Thread(target=lambda: outcomes.append((0, worker(engine, barrier, recipe))))
            for _ in range(WORKERS)
        ]
        with statements(engine) as sent:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        outcomes.append((sum(s.startswith("INSERT") for s in sent), []))
    else:
        context: ForkContext | SpawnContext
        if "fork" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("fork")
        else:
            context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(WORKERS)
        results = context.Queue()
        text = url.render_as_string(hide_password=False)
        processes = [
            context.Process(target=process_worker, args=(text, barrier, results, recipe)) for _ in range(WORKERS)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=300) for _ in processes]
        for process in processes:
            process.join()
    took = time.perf_counter() - started
    with Session(engine) as session:
        rows = session.scalar(select(func.count()).select_from(Keyword))
    inserts = sum(n for n, _ in outcomes)
    errors = [e for _, errs in outcomes for e in errs]
    kinds = ", ".join(sorted({f"{errors.count(e)} {e}" for e in errors}))
    return (
        f"{recipe:>12} {how:>9}: {WORKERS} x {CALLS} calls over {KEYS} keys: "
        f"rows created {rows} (must be {KEYS}), errors {len(errors)}{f' ({kinds})' if kinds else ''}, "
        f"INSERTs sent {inserts}, {took:.1f} s"
    )


def main() -> None:
    for name in BACKENDS:
        backend = Backend.from_name(name)
        try:
            version = backend.check()
        except BackendError as exc:
            print(f"-- {name}: skipped ({str(exc).splitlines()[0]})")
            continue
        print(f"-- {name} {version}", flush=True)
        with backend.database() as url:
            engine = create_engine(url)
            try:
                for line in statement_counts(engine):
                    print(f"   {line}", flush=True)
                for recipe in RECIPES:
                    for how in ("threads", "processes"):
                        print(f"   {race(engine, url, how, recipe)}", flush=True)
                engine.dispose()
                engine = create_engine(url)
                Base.metadata.drop_all(engine)
            finally:
                engine.dispose()


if __name__ == "__main__":
    main()
