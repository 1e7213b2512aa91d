"""ExpireRelationshipOnFKChange: the cost of 100,000 foreign key sets, with and without the recipe.

Two identical models, one on a base with the recipe installed and one without.  Each case sets
``bar.foo_id`` 100,000 times (1,000 objects, 100 rounds, alternating between two parents) and
nothing else: no attribute is read in the timed loop, so no SQL is sent.  Each figure is the best
of a few runs, to keep noise from other work out.
"""

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import ForeignKey, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from sqlalchemy_cookbook import ExpireRelationshipOnFKChange

OBJECTS = 1_000
ROUNDS = 100
RUNS = 3


def models(install: bool) -> tuple[type[Any], type[Any], type[Any]]:
    class Base(DeclarativeBase):
        pass

    if install:
        ExpireRelationshipOnFKChange.install(Base)

    class Foo(Base):
        __tablename__ = "foo"
        id: Mapped[int] = mapped_column(primary_key=True)
        bars: Mapped[list["Bar"]] = relationship(back_populates="foo")

    class Bar(Base):
        __tablename__ = "bar"
        id: Mapped[int] = mapped_column(primary_key=True)
        foo_id: Mapped[int | None] = mapped_column(ForeignKey("foo.id"))
        foo: Mapped[Foo | None] = relationship(back_populates="bars")

    return Base, Foo, Bar


def timed(objects: list[Any]) -> float:
    started = time.process_time()
    for _ in range(ROUNDS // 2):
        for bar in objects:
            bar.foo_id = 2
        for bar in objects:
            bar.foo_id = 1
    return time.process_time() - started


def transient(base: Any, foo: Any, bar: Any, session: Session) -> list[Any]:
    return [bar(foo_id=1) for _ in range(OBJECTS)]


def pending(base: Any, foo: Any, bar: Any, session: Session) -> list[Any]:
    objects = [bar(id=OBJECTS + i + 1, foo_id=1) for i in range(OBJECTS)]
    session.add_all(objects)
    return objects


def persistent(base: Any, foo: Any, bar: Any, session: Session) -> list[Any]:
    return list(session.scalars(select(bar)))


def with_parents(base: Any, foo: Any, bar: Any, session: Session) -> list[Any]:
    objects = list(session.scalars(select(bar)))
    for parent in session.scalars(select(foo)):
        parent.bars
    return objects


def with_relationship(base: Any, foo: Any, bar: Any, session: Session) -> list[Any]:
    objects = list(session.scalars(select(bar)))
    for parent in session.scalars(select(foo)):
        parent.bars
    for obj in objects:
        obj.foo
    return objects


CASES: list[tuple[str, Callable[[Any, Any, Any, Session], list[Any]]]] = [
    ("no Session (transient objects)", transient),
    ("pending objects", pending),
    ("persistent, nothing else loaded", persistent),
    ("persistent, both parents and their collections loaded", with_parents),
    ("persistent, bar.foo loaded too (first round only)", with_relationship),
]


def run(install: bool, case: Callable[[Any, Any, Any, Session], list[Any]]) -> float:
    base, foo, bar = models(install)
    engine = create_engine("sqlite://")
    base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([foo(id=1), foo(id=2)])
        session.add_all([bar(id=i + 1, foo_id=1) for i in range(OBJECTS)])
        session.commit()
    best = float("inf")
    for _ in range(RUNS):
        with Session(engine) as session:
            objects = case(base, foo, bar, session)
            best = min(best, timed(objects))
            session.rollback()
    engine.dispose()
    return best


def main() -> None:
    sets = OBJECTS * ROUNDS
    print(f"   {sets:,} sets of bar.foo_id, best of {RUNS}; microseconds per set")
    print(f"   {'case':<56} {'without':>8} {'with':>8} {'ratio':>6}")
    for name, case in CASES:
        without = run(False, case)
        with_recipe = run(True, case)
        print(f"   {name:<56} {without / sets * 1e6:8.2f} {with_recipe / sets * 1e6:8.2f} {with_recipe / without:6.1f}")


if __name__ == "__main__":
    main()
