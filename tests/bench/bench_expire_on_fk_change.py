"""ExpireRelationshipOnFKChange: the cost of foreign key sets, with and without the recipe.

Two identical models, one on a base with the recipe installed and one without.  Each case sets
``bar.foo_id`` 100,000 times (1,000 objects, 100 rounds, alternating between two parents) and
nothing else: no attribute is read in the timed loop, so no SQL is sent.  Each figure is the best
of a few runs, to keep noise from other work out.

Then the cost per set against the size of a collection: Foo 1's children loaded, one child
appended to them and not flushed (so the collection has changes of its own and is not expired),
and children moved between Foo 1 and Foo 2 by their key.  The cost per set must not grow with the
number of children.
"""

import gc
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import ForeignKey, create_engine, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from sqlalchemy_cookbook import ExpireRelationshipOnFKChange

OBJECTS = 1_000
ROUNDS = 100
RUNS = 3
# Children in the collection, and how many sets are timed at that size: loading 100,000
# children is what takes the time there, so fewer sets are timed.
COLLECTION_SIZES = ((10, 10_000), (1_000, 10_000), (100_000, 1_000))


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


def with_unflushed_append(install: bool, children: int, sets: int) -> float:
    """Seconds per set of bar.foo_id, best of RUNS, while Foo 1's loaded children hold an unflushed append."""
    base, foo, bar = models(install)
    engine = create_engine("sqlite://")
    base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([foo(id=1), foo(id=2)])
        session.flush()
        session.execute(insert(bar), [{"id": i + 1, "foo_id": 1} for i in range(children)])
        session.commit()
    with Session(engine) as session:
        first, second = session.scalars(select(foo).order_by(foo.id)).all()
        second.bars
        moved = first.bars[: min(children, sets)]
        # Last, so that no load autoflushes it: the collection keeps an unflushed change.
        first.bars.append(bar(id=children + 1))
        rounds = max(1, sets // len(moved))
        best = float("inf")
        for _ in range(RUNS):
            # With 100,000 objects alive, the garbage collector's full passes would be timed too.
            gc.disable()
            try:
                started = time.process_time()
                for round_ in range(rounds):
                    target = 2 if round_ % 2 == 0 else 1
                    for child in moved:
                        child.foo_id = target
                best = min(best, (time.process_time() - started) / (rounds * len(moved)))
            finally:
                gc.enable()
            for child in moved:
                child.foo_id = 1
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
    print(
        f"   collection with an unflushed append: microseconds per set, by number of children, best of {RUNS} "
        f"(garbage collector off while timing)"
    )
    print(f"   {'children':>10} {'sets timed':>11} {'without':>8} {'with':>8} {'ratio':>6}")
    for children, timed_sets in COLLECTION_SIZES:
        without = with_unflushed_append(False, children, timed_sets)
        with_recipe = with_unflushed_append(True, children, timed_sets)
        fewer = "  (fewer sets: loading the children takes the time)" if timed_sets < COLLECTION_SIZES[0][1] else ""
        print(
            f"   {children:>10,} {timed_sets:>11,} {without * 1e6:8.2f} {with_recipe * 1e6:8.2f} "
            f"{with_recipe / without:6.1f}{fewer}"
        )


if __name__ == "__main__":
    main()
