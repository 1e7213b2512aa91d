"""PreFilteredQuery: 10,000 filtered SELECTs against the same SELECTs with the criterion written by hand.

The target is a ratio of at most 1.1, which holds only if the statement cache serves the
filtered statements.  SQLite in memory, so the figure is the ORM's own cost, not the network's.
The two variants alternate in short runs, so a busy machine slows both alike.
"""

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy
from sqlalchemy import String, bindparam, create_engine, false, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sqlalchemy_cookbook import PreFilteredQuery

SELECTS = 10_000
CHUNK = 250
TARGET = 1.1


class Base(DeclarativeBase):
    pass


class Hideable:
    tenant: Mapped[str] = mapped_column(String(8))
    deleted: Mapped[bool] = mapped_column(default=False)


class Note(Hideable, Base):
    __tablename__ = "note"
    id: Mapped[int] = mapped_column(primary_key=True)


def timed(session: Session, statement: Callable[[int], Any], start: int, count: int) -> float:
    started = time.perf_counter()
    for i in range(start, start + count):
        session.scalars(statement(i)).all()
    return time.perf_counter() - started


def main() -> None:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add_all(Note(id=i, tenant="ab"[i % 2], deleted=i % 3 == 0) for i in range(20))

    plain = sessionmaker(engine, info={"tenant": "a"})
    soft = sessionmaker(engine)
    PreFilteredQuery(Hideable, lambda cls: cls.deleted == false(), opt_out="include_deleted").install(soft)
    tenant = sessionmaker(engine, info={"tenant": "a"})
    PreFilteredQuery(
        Hideable,
        lambda cls: cls.tenant == bindparam("current_tenant"),
        params=lambda session: {"current_tenant": session.info["tenant"]},
        opt_out="all_tenants",
    ).install(tenant)

    cases = {
        "soft delete": (
            (plain, lambda i: select(Note).where(Note.id == i % 20, Note.deleted == false())),
            (soft, lambda i: select(Note).where(Note.id == i % 20)),
        ),
        "tenant from session.info": (
            (plain, lambda i: select(Note).where(Note.id == i % 20, Note.tenant == "a")),
            (tenant, lambda i: select(Note).where(Note.id == i % 20)),
        ),
    }
    print(
        f"   {SELECTS:,} SELECTs of one row, SQLite {sqlite3.sqlite_version} in memory, "
        f"SQLAlchemy {sqlalchemy.__version__}, in alternating runs of {CHUNK}"
    )
    for name, ((hand_maker, hand), (filtered_maker, filtered)) in cases.items():
        total = {"hand": 0.0, "filtered": 0.0}
        with hand_maker() as hand_session, filtered_maker() as filtered_session:
            # Compile once outside the timing; then alternate short runs of each, so that
            # whatever else the machine does weighs on both alike.
            timed(hand_session, hand, 0, CHUNK)
            timed(filtered_session, filtered, 0, CHUNK)
            for start in range(0, SELECTS, CHUNK):
                total["hand"] += timed(hand_session, hand, start, CHUNK)
                total["filtered"] += timed(filtered_session, filtered, start, CHUNK)
        ratio = total["filtered"] / total["hand"]
        verdict = "ok" if ratio <= TARGET else f"over the {TARGET} target"
        print(
            f"   {name:26} by hand {total['hand']:.2f} s, PreFilteredQuery {total['filtered']:.2f} s, "
            f"ratio {ratio:.2f} ({verdict})"
        )
    engine.dispose()


if __name__ == "__main__":
    main()
