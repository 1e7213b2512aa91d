"""ExpireRelationshipOnFKChange: setting a foreign key attribute updates the relationships built on it."""

import gc
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from sqlalchemy import Column, ForeignKey, ForeignKeyConstraint, String, Table, insert, inspect, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InvalidRequestError, PendingRollbackError, StatementError
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncSession
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    MappedAsDataclass,
    Session,
    WriteOnlyMapped,
    configure_mappers,
    joinedload,
    load_only,
    mapped_as_dataclass,
    mapped_column,
    registry,
    relationship,
    selectinload,
)

from sqlalchemy_cookbook import ExpireRelationshipOnFKChange
from tests.library.aio import AsyncRun
from tests.library.statements import statements

# -- models ------------------------------------------------------------------------------------


class Base(AsyncAttrs, DeclarativeBase):
    """AsyncAttrs gives the AsyncSession tests ``await obj.awaitable_attrs.name``; it changes nothing else."""


FK_SYNC = ExpireRelationshipOnFKChange.install(Base)


foo_label = Table(
    "foo_label",
    Base.metadata,
    Column("foo_id", ForeignKey("foo.id"), primary_key=True),
    Column("label_id", ForeignKey("label.id"), primary_key=True),
)


class Foo(Base):
    __tablename__ = "foo"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str | None] = mapped_column(String(10), unique=True)
    bars: Mapped[list["Bar"]] = relationship(back_populates="foo", order_by="Bar.id")
    # Not watched: many-to-many keeps its keys in foo_label; write-only queries every time.
    labels: Mapped[list["Label"]] = relationship(secondary=foo_label)
    bar_log: WriteOnlyMapped["Bar"] = relationship(viewonly=True)
    # One-to-one, seen from the parent.
    badge: Mapped["Badge | None"] = relationship(back_populates="foo")

    if TYPE_CHECKING:
        # Made at run time by Tag.foo's backref (kept a backref on purpose); declared for mypy only.
        tags: Mapped[list["Tag"]]


class Label(Base):
    __tablename__ = "label"

    id: Mapped[int] = mapped_column(primary_key=True)


class Badge(Base):
    __tablename__ = "badge"

    id: Mapped[int] = mapped_column(primary_key=True)
    foo_id: Mapped[int | None] = mapped_column(ForeignKey("foo.id"), unique=True)
    foo: Mapped[Foo | None] = relationship(back_populates="badge")


class Bar(Base):
    __tablename__ = "bar"

    id: Mapped[int] = mapped_column(primary_key=True)
    foo_id: Mapped[int | None] = mapped_column(ForeignKey("foo.id"))
    foo: Mapped[Foo | None] = relationship(back_populates="bars")
    # Follows the same column, read-only.
    foo_view: Mapped[Foo | None] = relationship(viewonly=True)
    kind: Mapped[str] = mapped_column(String(10), default="bar")

    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "bar"}


class SpecialBar(Bar):
    """Joined-table subclass with a relationship of its own on the inherited column."""

    __tablename__ = "special_bar"

    id: Mapped[int] = mapped_column(ForeignKey("bar.id"), primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("foo.id"))
    owner: Mapped[Foo | None] = relationship(foreign_keys=[owner_id])

    __mapper_args__ = {"polymorphic_identity": "special"}


class Parent(Base):
    """A one-to-many with no many-to-one on the other side."""

    __tablename__ = "parent"

    id: Mapped[int] = mapped_column(primary_key=True)
    children: Mapped[list["Child"]] = relationship(order_by="Child.id")


class Child(Base):
    __tablename__ = "child"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("parent.id"))


class Node(Base):
    """Self-referential: a node's parent is another node."""

    __tablename__ = "node"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("node.id"))
    parent: Mapped["Node | None"] = relationship(back_populates="children", remote_side=[id])
    children: Mapped[list["Node"]] = relationship(back_populates="parent", order_by="Node.id")


class Shelf(Base):
    """Composite primary key."""

    __tablename__ = "shelf"

    room: Mapped[str] = mapped_column(String(10), primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True)
    books: Mapped[list["Book"]] = relationship(back_populates="shelf", order_by="Book.id")


class Book(Base):
    __tablename__ = "book"
    __table_args__ = (ForeignKeyConstraint(["room", "number"], ["shelf.room", "shelf.number"]),)

    id: Mapped[int] = mapped_column(primary_key=True)
    room: Mapped[str | None] = mapped_column(String(10))
    number: Mapped[int | None]
    shelf: Mapped[Shelf | None] = relationship(back_populates="books")


class Tag(Base):
    """A foreign key to a unique column that is not the primary key."""

    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    foo_code: Mapped[str | None] = mapped_column(ForeignKey("foo.code"))
    foo: Mapped[Foo | None] = relationship(backref="tags")


ITERATIONS = [0]


class CountingList(list[Any]):
    """A list that counts how often it is walked: a set that walks a collection costs its size."""

    def __iter__(self) -> Iterator[Any]:
        ITERATIONS[0] += 1
        return super().__iter__()


class Crate(Base):
    __tablename__ = "crate"

    id: Mapped[int] = mapped_column(primary_key=True)
    bottles: Mapped[list["Bottle"]] = relationship(back_populates="crate", collection_class=CountingList)


class Bottle(Base):
    __tablename__ = "bottle"

    id: Mapped[int] = mapped_column(primary_key=True)
    crate_id: Mapped[int | None] = mapped_column(ForeignKey("crate.id"))
    crate: Mapped[Crate | None] = relationship(back_populates="bottles")


class Owner(Base):
    """Children the flush deletes once they are taken out of the collection."""

    __tablename__ = "owner"

    id: Mapped[int] = mapped_column(primary_key=True)
    pets: Mapped[list["Pet"]] = relationship(back_populates="owner", cascade="all, delete-orphan", order_by="Pet.id")


class Pet(Base):
    __tablename__ = "pet"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owner.id"))
    owner: Mapped[Owner | None] = relationship(back_populates="pets")


class Garage(Base):
    """Relationships that refuse to load lazily."""

    __tablename__ = "garage"

    id: Mapped[int] = mapped_column(primary_key=True)
    cars: Mapped[list["Car"]] = relationship(back_populates="garage", lazy="raise")


class Car(Base):
    __tablename__ = "car"

    id: Mapped[int] = mapped_column(primary_key=True)
    garage_id: Mapped[int | None] = mapped_column(ForeignKey("garage.id"))
    garage: Mapped[Garage | None] = relationship(back_populates="cars", lazy="raise")


# -- helpers -----------------------------------------------------------------------------------


def ids(objects: Any) -> list[int]:
    return [o.id for o in objects]


T = TypeVar("T")


def present(value: T | None) -> T:
    """The object a many-to-one holds; None fails the test here (and mypy then knows it is there)."""
    assert value is not None
    return value


def add_foos_and_bars(engine: Engine) -> None:
    """Foos 1, 3 and 7 (codes a, c, g); bars 1 and 2 in Foo 1; committed."""
    Base.metadata.create_all(engine)
    with Session(engine) as setup:
        setup.add_all([Foo(id=1, code="a"), Foo(id=3, code="c"), Foo(id=7, code="g")])
        setup.flush()
        setup.add_all([Bar(id=1, foo_id=1), Bar(id=2, foo_id=1)])
        setup.commit()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on foos 1, 3 and 7 and bars 1 and 2 (see add_foos_and_bars)."""
    add_foos_and_bars(engine)
    with Session(engine) as session:
        yield session


def stored_foo_id(engine: Engine, bar_id: int) -> int | None:
    with Session(engine) as other:
        return other.scalar(select(Bar.foo_id).where(Bar.id == bar_id))


# -- persistent objects ------------------------------------------------------------------------


def test_loaded_many_to_one_follows_the_new_value(session: Session) -> None:
    """The FAQ's surprise is gone: after bar.foo_id = 7, bar.foo is Foo 7, not the Foo it held."""
    bar = session.get(Bar, 1)
    assert bar is not None and bar.foo is not None
    assert 1 == bar.foo.id
    bar.foo_id = 7
    assert session.get(Foo, 7) is bar.foo


def test_parent_in_identity_map_costs_no_sql(session: Session, engine: Engine) -> None:
    """When the Session already has Foo 7, bar.foo comes from the identity map."""
    bar = session.get(Bar, 1)
    assert bar is not None
    bar.foo
    foo7 = session.get(Foo, 7)
    bar.foo_id = 7
    session.flush()
    with statements(engine, "SELECT") as seen:
        assert foo7 is bar.foo
    assert [] == seen


def test_parent_not_loaded_costs_one_select(session: Session, engine: Engine) -> None:
    """When the Session does not have Foo 7, one SELECT by primary key loads it."""
    bar = session.get(Bar, 1)
    assert bar is not None
    bar.foo
    bar.foo_id = 7
    with statements(engine, "SELECT") as seen:
        assert 7 == present(bar.foo).id
    assert 1 == len(seen)


def test_none_empties_the_relationship(session: Session) -> None:
    """Setting the foreign key to None leaves the many-to-one empty."""
    bar = session.get(Bar, 1)
    assert bar is not None
    bar.foo
    bar.foo_id = None
    assert bar.foo is None


def test_view_only_many_to_one_follows_too(session: Session) -> None:
    """A viewonly relationship on the same column is refreshed as well."""
    bar = session.get(Bar, 1)
    assert bar is not None
    assert 1 == present(bar.foo_view).id
    bar.foo_id = 7
    assert 7 == present(bar.foo_view).id


def test_same_value_keeps_what_is_loaded(session: Session) -> None:
    """Setting the value it already has expires nothing."""
    bar = session.get(Bar, 1)
    assert bar is not None
    bar.foo
    bar.foo_id = 1
    assert "foo" in inspect(bar).dict


def test_old_parent_collection_loses_the_object(session: Session) -> None:
    """Foo 1's loaded collection no longer lists the moved bar."""
    foo1 = session.get(Foo, 1)
    bar = session.get(Bar, 1)
    assert foo1 is not None and bar is not None
    assert [1, 2] == ids(foo1.bars)
    bar.foo_id = 7
    assert [2] == ids(foo1.bars)


def test_new_parent_collection_gains_the_object(session: Session) -> None:
    """Foo 7's loaded collection lists the moved bar."""
    foo7 = session.get(Foo, 7)
    bar = session.get(Bar, 1)
    assert foo7 is not None and bar is not None
    assert [] == ids(foo7.bars)
    bar.foo_id = 7
    assert [1] == ids(foo7.bars)


def test_old_parent_found_through_the_foreign_key(session: Session) -> None:
    """The old parent's collection is refreshed even when bar.foo was never loaded."""
    foo1 = session.get(Foo, 1)
    bar = session.get(Bar, 1)
    assert foo1 is not None and bar is not None
    foo1.bars
    assert "foo" not in inspect(bar).dict
    bar.foo_id = 3
    assert [2] == ids(foo1.bars)


def test_foreign_key_set_last_wins_over_an_unflushed_relationship(session: Session, engine: Engine) -> None:
    """bar.foo = foo3 then bar.foo_id = 7: the flush writes 7, and Foo 3's collection lets go."""
    foo3 = session.get(Foo, 3)
    bar = session.get(Bar, 1)
    assert foo3 is not None and bar is not None
    foo3.bars
    bar.foo = foo3
    assert [1] == ids(foo3.bars)
    bar.foo_id = 7
    assert [] == ids(foo3.bars)
    session.commit()
    assert 7 == stored_foo_id(engine, 1)


def test_relationship_set_last_still_wins(session: Session, engine: Engine) -> None:
    """bar.foo_id = 7 then bar.foo = foo3: the relationship is the later write and the flush keeps it."""
    foo3 = session.get(Foo, 3)
    bar = session.get(Bar, 1)
    assert foo3 is not None and bar is not None
    bar.foo_id = 7
    bar.foo = foo3
    session.commit()
    assert 3 == stored_foo_id(engine, 1)


def test_key_set_to_its_own_value_after_the_relationship_wins(session: Session, engine: Engine) -> None:
    """foo7.bars.append(bar) then bar.foo_id = 1, its value already: the key is the later write, and stays 1."""
    foo7, bar = session.get(Foo, 7), session.get(Bar, 1)
    assert foo7 is not None and bar is not None
    foo7.bars.append(bar)
    bar.foo_id = 1
    session.commit()
    assert 1 == stored_foo_id(engine, 1)


def test_key_set_after_taking_out_is_refused(session: Session) -> None:
    """bar.foo = None then bar.foo_id = 7: the flush would write NULL (foo1.bars lost bar), so it is refused."""
    foo1, bar = session.get(Foo, 1), session.get(Bar, 1)
    assert foo1 is not None and bar is not None
    foo1.bars
    bar.foo = None
    with pytest.raises(InvalidRequestError, match=r"taken out of .*\.bars .*would write NULL"):
        bar.foo_id = 7


def test_key_set_after_removing_from_the_collection_is_refused(session: Session) -> None:
    """foo1.bars.remove(bar) then bar.foo_id = 7: the same removal, the same refusal."""
    foo1, bar = session.get(Foo, 1), session.get(Bar, 1)
    assert foo1 is not None and bar is not None
    foo1.bars.remove(bar)
    with pytest.raises(InvalidRequestError, match="taken out of"):
        bar.foo_id = 7


def test_refused_set_changes_nothing(session: Session) -> None:
    """The refused set leaves the key as it was."""
    foo1, bar = session.get(Foo, 1), session.get(Bar, 1)
    assert foo1 is not None and bar is not None
    foo1.bars.remove(bar)
    with pytest.raises(InvalidRequestError):
        bar.foo_id = 7
    assert 1 == bar.foo_id


def test_key_set_after_taking_out_of_an_unloaded_collection_wins(session: Session, engine: Engine) -> None:
    """bar.foo = None with Foo 1's bars not loaded, then bar.foo_id = 7: the queued removal is dropped; 7 is written."""
    bar = session.get(Bar, 1)
    assert bar is not None
    bar.foo = None
    bar.foo_id = 7
    session.commit()
    assert 7 == stored_foo_id(engine, 1)


def test_key_set_to_none_after_taking_out_is_allowed(session: Session, engine: Engine) -> None:
    """Taking bar out and setting its key to None agree: NULL is written."""
    foo1, bar = session.get(Foo, 1), session.get(Bar, 1)
    assert foo1 is not None and bar is not None
    foo1.bars.remove(bar)
    bar.foo_id = None
    session.commit()
    assert stored_foo_id(engine, 1) is None


def test_key_set_after_a_flushed_removal_is_written(session: Session, engine: Engine) -> None:
    """Once the removal is flushed (NULL written), a new key is a plain move."""
    foo1, bar = session.get(Foo, 1), session.get(Bar, 1)
    assert foo1 is not None and bar is not None
    foo1.bars.remove(bar)
    session.flush()
    bar.foo_id = 7
    session.commit()
    assert 7 == stored_foo_id(engine, 1)


def test_key_set_after_taking_out_without_many_to_one_is_refused(engine: Engine) -> None:
    """A one-to-many with nothing on the child's side: one.children.remove(child), then a key, is refused too."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Parent(id=1), Parent(id=2)])
        session.flush()
        session.add(Child(id=1, parent_id=1))
        session.commit()
        one, child = session.get(Parent, 1), session.get(Child, 1)
        assert one is not None and child is not None
        one.children.remove(child)
        with pytest.raises(InvalidRequestError, match="taken out of"):
            child.parent_id = 2


@pytest.fixture
def owners(engine: Engine) -> Iterator[Session]:
    """Owners 1 and 2; pet 1 belongs to Owner 1, whose pets are deleted once orphaned."""
    Base.metadata.create_all(engine)
    with Session(engine) as setup:
        setup.add_all([Owner(id=1), Owner(id=2)])
        setup.flush()
        setup.add(Pet(id=1, owner_id=1))
        setup.commit()
    with Session(engine) as session:
        yield session


def test_delete_orphan_key_set_after_taking_out_is_refused(owners: Session) -> None:
    """pet.owner = None then pet.owner_id = 2, with delete-orphan: the flush would delete the row, so it is refused."""
    owner1, pet = owners.get(Owner, 1), owners.get(Pet, 1)
    assert owner1 is not None and pet is not None
    pet.owner = None
    with pytest.raises(InvalidRequestError, match="would delete it"):
        pet.owner_id = 2


def test_delete_orphan_key_set_moves_the_object(owners: Session, engine: Engine) -> None:
    """Without taking it out first, pet.owner_id = 2 moves the pet; nothing is deleted."""
    owner1, pet = owners.get(Owner, 1), owners.get(Pet, 1)
    assert owner1 is not None and pet is not None
    owner1.pets, pet.owner
    pet.owner_id = 2
    owners.commit()
    with Session(engine) as other:
        assert [(1, 2)] == [tuple(row) for row in other.execute(select(Pet.id, Pet.owner_id))]


def test_unloaded_collection_forgets_the_backref(session: Session, engine: Engine) -> None:
    """bar.foo = foo3 with foo3.bars unloaded, then bar.foo_id = 7: foo3.bars does not list bar."""
    foo3 = session.get(Foo, 3)
    bar = session.get(Bar, 1)
    assert foo3 is not None and bar is not None
    bar.foo = foo3
    bar.foo_id = 7
    assert [] == ids(foo3.bars)
    session.commit()
    assert 7 == stored_foo_id(engine, 1)


def test_collection_with_unflushed_changes_is_kept(session: Session, engine: Engine) -> None:
    """A collection someone changed is not expired: nothing appended to it is lost."""
    foo1 = session.get(Foo, 1)
    bar = session.get(Bar, 1)
    assert foo1 is not None and bar is not None
    foo1.bars.append(Bar(id=20))
    bar.foo_id = 7
    assert [1, 2, 20] == ids(foo1.bars)
    session.commit()
    assert (1, 7) == (stored_foo_id(engine, 20), stored_foo_id(engine, 1))


def test_flush_writes_are_left_alone(session: Session) -> None:
    """The foreign key the flush copies from bar.foo does not expire bar.foo."""
    foo7 = session.get(Foo, 7)
    bar = session.get(Bar, 1)
    assert foo7 is not None and bar is not None
    bar.foo = foo7
    session.flush()
    assert (7, True) == (bar.foo_id, "foo" in inspect(bar).dict)


def test_flush_clearing_a_foreign_key_is_left_alone(engine: Engine) -> None:
    """Deleting a parent makes the flush set its children's key to NULL; the recipe stays out of the flush."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Node(id=1))
        session.flush()
        session.add(Node(id=3, parent_id=1))
        session.commit()
        one, three = session.get(Node, 1), session.get(Node, 3)
        assert one is not None and three is not None
        one.children, three.parent
        session.delete(one)
        session.flush()
        assert (None, one) == (three.parent_id, three.parent)


def test_loading_is_quiet(session: Session, engine: Engine) -> None:
    """Loading rows, also over loaded objects, expires nothing and costs nothing more."""
    bars = session.scalars(select(Bar).options(joinedload(Bar.foo)).order_by(Bar.id)).unique().all()
    with statements(engine, "SELECT") as seen:
        again = (
            session.scalars(
                select(Bar).options(joinedload(Bar.foo)).order_by(Bar.id).execution_options(populate_existing=True)
            )
            .unique()
            .all()
        )
    assert (1, True) == (len(seen), all("foo" in inspect(b).dict for b in again))
    assert bars == again


def test_every_eager_loader_follows(session: Session) -> None:
    """Relationships loaded by joinedload and selectinload are expired like lazy ones, and reload right."""
    foo1, foo7 = session.scalars(select(Foo).options(selectinload(Foo.bars)).order_by(Foo.id).where(Foo.id.in_([1, 7])))
    bar = session.scalars(select(Bar).options(joinedload(Bar.foo)).where(Bar.id == 1)).unique().one()
    bar.foo_id = 7
    assert (7, [2], [1]) == (present(bar.foo).id, ids(foo1.bars), ids(foo7.bars))


def test_raise_loader_relationship_raises_after_a_set(engine: Engine) -> None:
    """Limit: a relationship with lazy="raise" is expired like any other: reading it raises instead of being stale."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Garage(id=1), Garage(id=2)])
        session.flush()
        session.add(Car(id=1, garage_id=1))
        session.commit()
        car = session.scalars(select(Car).options(joinedload(Car.garage)).where(Car.id == 1)).unique().one()
        car.garage_id = 2
        with pytest.raises(InvalidRequestError, match="lazy='raise'"):
            car.garage


def test_orm_update_statement_is_not_seen(session: Session) -> None:
    """Limit: an UPDATE statement sets the key without an attribute event; bar.foo keeps what it held."""
    bar = session.get(Bar, 1)
    assert bar is not None
    bar.foo
    session.execute(update(Bar).where(Bar.id == 1).values(foo_id=7))
    assert (7, 1) == (bar.foo_id, present(bar.foo).id)


def test_savepoint_rollback_restores_the_old_parent(session: Session) -> None:
    """A set inside a rolled-back SAVEPOINT: bar.foo and both collections show the old parent again."""
    foo1, foo7, bar = session.get(Foo, 1), session.get(Foo, 7), session.get(Bar, 1)
    assert foo1 is not None and foo7 is not None and bar is not None
    foo1.bars, foo7.bars, bar.foo
    savepoint = session.begin_nested()
    bar.foo_id = 7
    foo7.bars
    savepoint.rollback()
    assert (1, [1, 2], []) == (present(bar.foo).id, ids(foo1.bars), ids(foo7.bars))


def test_subclass_gets_both_behaviours(session: Session) -> None:
    """A subclass instance gets the base class's behaviour and its own relationship's."""
    special = SpecialBar(id=30, foo_id=1, owner_id=1)
    session.add(special)
    session.commit()
    special.foo, special.owner
    special.foo_id = 7
    special.owner_id = 3
    assert (7, 3) == (present(special.foo).id, present(special.owner).id)


# -- autoflush off -----------------------------------------------------------------------------


def test_autoflush_off_many_to_one_still_follows(session: Session) -> None:
    """Without autoflush, bar.foo still loads Foo 7: the load reads the new value, not the row."""
    session.autoflush = False
    bar = session.get(Bar, 1)
    assert bar is not None
    bar.foo
    bar.foo_id = 7
    assert 7 == present(bar.foo).id


def test_autoflush_off_collections_show_the_rows_until_commit(session: Session) -> None:
    """Without autoflush, the expired collections reload the rows as stored, and keep them until commit."""
    session.autoflush = False
    foo1, foo7, bar = session.get(Foo, 1), session.get(Foo, 7), session.get(Bar, 1)
    assert foo1 is not None and foo7 is not None and bar is not None
    foo1.bars, foo7.bars
    bar.foo_id = 7
    assert ([1, 2], []) == (ids(foo1.bars), ids(foo7.bars))
    session.flush()
    assert ([1, 2], []) == (ids(foo1.bars), ids(foo7.bars))
    session.commit()
    assert ([2], [1]) == (ids(foo1.bars), ids(foo7.bars))


# -- pending objects ---------------------------------------------------------------------------


def test_pending_object_loads_the_parent(session: Session) -> None:
    """On an object added but not flushed, bar.foo loads Foo 7 from bar.foo_id."""
    bar = Bar(id=10)
    session.add(bar)
    bar.foo_id = 7
    assert (True, 7) == (inspect(bar).pending, present(bar.foo).id)


def test_pending_foreign_key_set_last_wins(session: Session, engine: Engine) -> None:
    """Bar(foo=foo1), added, then foo_id = 7: the INSERT has 7 and Foo 1's collection lets go."""
    foo1 = session.get(Foo, 1)
    assert foo1 is not None
    foo1.bars
    bar = Bar(id=10, foo=foo1)
    session.add(bar)
    bar.foo_id = 7
    assert ([1, 2], 7) == (ids(foo1.bars), present(bar.foo).id)
    session.commit()
    assert 7 == stored_foo_id(engine, 10)


def test_pending_new_parent_collection_gains_the_object(session: Session) -> None:
    """Foo 7's loaded collection lists a pending bar moved to it (autoflush inserts the bar)."""
    foo7 = session.get(Foo, 7)
    assert foo7 is not None
    foo7.bars
    bar = Bar(id=10)
    session.add(bar)
    bar.foo_id = 7
    assert [10] == ids(foo7.bars)


def test_pending_parent_is_found_after_the_flush(session: Session) -> None:
    """Both pending: bar.foo is None (its load cannot autoflush), and Foo 8 once both rows exist."""
    foo8 = Foo(id=8)
    bar = Bar(id=10)
    session.add_all([foo8, bar])
    bar.foo_id = 8
    assert bar.foo is None
    session.flush()
    assert foo8 is bar.foo


def test_pending_parent_collection_is_not_found(session: Session) -> None:
    """Limit: a parent still pending is not in the identity map, so its collection read before does not gain bar."""
    bar = session.get(Bar, 1)
    assert bar is not None
    foo8 = Foo(id=8)
    session.add(foo8)
    foo8.bars
    bar.foo_id = 8
    assert [] == ids(foo8.bars)


def test_pending_object_loads_its_other_relationships_too(session: Session, engine: Engine) -> None:
    """The side effect of relationship loading on a pending object: its collections run a SELECT."""
    node = Node(id=5)
    session.add(node)
    node.parent_id = None
    with statements(engine, "SELECT") as seen:
        assert [] == node.children
    assert 1 == len(seen)


def test_construction_is_quiet(session: Session, engine: Engine) -> None:
    """Bar(foo_id=7) has no Session: no SQL, and foo loads only once the row exists, as without the recipe."""
    with statements(engine, "SELECT") as seen:
        bar = Bar(id=10, foo_id=7)
    assert [] == seen
    session.add(bar)
    assert bar.foo is None
    session.flush()
    assert 7 == present(bar.foo).id


def test_constructed_and_added_is_not_in_a_loaded_collection(session: Session) -> None:
    """Limit, as without the recipe: Bar(foo_id=7) added later is not in Foo 7's loaded collection."""
    foo7 = session.get(Foo, 7)
    assert foo7 is not None
    foo7.bars
    session.add(Bar(id=10, foo_id=7))
    session.flush()
    assert [] == ids(foo7.bars)


def test_sql_expression_cannot_be_read_before_the_flush(session: Session) -> None:
    """Limit, SQLAlchemy's own: an unloaded many-to-one over a SQL expression key fails to load."""
    bar = session.get(Bar, 1)
    assert bar is not None
    bar.foo
    bar.foo_id = select(Foo.id).where(Foo.code == "g").scalar_subquery()
    with pytest.raises(TypeError):
        bar.foo


def test_sql_expression_new_parent_collection_gains_the_object(session: Session) -> None:
    """A key set to a SQL expression names no parent yet: the loaded collections are expired, and Foo 7's lists bar."""
    foo7, bar = session.get(Foo, 7), session.get(Bar, 1)
    assert foo7 is not None and bar is not None
    foo7.bars
    bar.foo_id = select(Foo.id).where(Foo.code == "g").scalar_subquery()
    assert [1] == ids(foo7.bars)


def test_sql_expression_new_parent_collection_after_the_flush(session: Session) -> None:
    """After the flush that writes the expression, Foo 7's collection, loaded before the set, lists bar."""
    foo7, bar = session.get(Foo, 7), session.get(Bar, 1)
    assert foo7 is not None and bar is not None
    foo7.bars
    bar.foo_id = select(Foo.id).where(Foo.code == "g").scalar_subquery()
    session.flush()
    assert [1] == ids(foo7.bars)


def test_expired_foreign_key_old_parent_loses_the_object(session: Session) -> None:
    """With bar.foo_id expired the old value is unknown: Foo 1's loaded collection is expired all the same."""
    foo1, bar = session.get(Foo, 1), session.get(Bar, 1)
    assert foo1 is not None and bar is not None
    foo1.bars
    session.expire(bar, ["foo_id"])
    bar.foo_id = 7
    assert [2] == ids(foo1.bars)


def test_foreign_key_not_loaded_old_parent_loses_the_object(session: Session) -> None:
    """A Bar loaded without its key (load_only): Foo 1's loaded collection is expired all the same."""
    foo1 = session.get(Foo, 1)
    assert foo1 is not None
    foo1.bars
    session.expunge(foo1.bars[0])
    bar = session.scalars(select(Bar).options(load_only(Bar.id)).where(Bar.id == 1)).one()
    bar.foo_id = 7
    assert [2] == ids(foo1.bars)


def test_sql_expression_is_read_after_the_flush(session: Session) -> None:
    """A foreign key set to a SQL expression: after the flush, bar.foo is the row's parent."""
    bar = session.get(Bar, 1)
    assert bar is not None
    bar.foo
    bar.foo_id = select(Foo.id).where(Foo.code == "g").scalar_subquery()
    session.flush()
    assert 7 == present(bar.foo).id


# -- objects outside a Session, deleted objects ------------------------------------------------


def test_detached_object_is_left_alone(session: Session, engine: Engine) -> None:
    """On a detached object the set is plain: nothing is expired, nothing is loaded."""
    bar = session.get(Bar, 1)
    assert bar is not None
    bar.foo
    session.close()
    bar.foo_id = 7
    assert 1 == present(bar.foo).id


def test_merge_brings_the_change_in(session: Session, engine: Engine) -> None:
    """Merging a detached object with a new foreign key updates the persistent copy's relationship."""
    bar = session.get(Bar, 1)
    assert bar is not None
    session.close()
    bar.foo_id = 7
    with Session(engine) as other:
        loaded = other.get(Bar, 1)
        assert loaded is not None
        loaded.foo
        merged = other.merge(bar)
        assert 7 == present(merged.foo).id


def test_deleted_object_is_left_alone(session: Session) -> None:
    """After its DELETE is flushed, setting the foreign key raises nothing."""
    bar = session.get(Bar, 1)
    assert bar is not None
    session.delete(bar)
    session.flush()
    bar.foo_id = 7
    assert inspect(bar).deleted


# -- other shapes of relationship --------------------------------------------------------------


def test_one_to_many_without_many_to_one(engine: Engine) -> None:
    """A collection with nothing on the child's side is refreshed on both parents."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Parent(id=1), Parent(id=2)])
        session.flush()
        session.add(Child(id=1, parent_id=1))
        session.commit()
        one, two, child = session.get(Parent, 1), session.get(Parent, 2), session.get(Child, 1)
        assert one is not None and two is not None and child is not None
        one.children, two.children
        child.parent_id = 2
        assert ([], [1]) == (ids(one.children), ids(two.children))


def test_one_to_one_from_the_parent_side(session: Session) -> None:
    """A scalar one-to-many (one-to-one) on the parent is refreshed on both parents."""
    session.add(Badge(id=1, foo_id=1))
    session.commit()
    foo1, foo7, badge = session.get(Foo, 1), session.get(Foo, 7), session.get(Badge, 1)
    assert foo1 is not None and foo7 is not None and badge is not None
    foo1.badge, foo7.badge
    badge.foo_id = 7
    assert (None, badge) == (foo1.badge, foo7.badge)


def test_one_to_one_foreign_key_set_last_wins(session: Session, engine: Engine) -> None:
    """badge.foo = foo3 then badge.foo_id = 7: Foo 3's badge lets go, and the flush writes 7."""
    session.add(Badge(id=1, foo_id=1))
    session.commit()
    foo3, badge = session.get(Foo, 3), session.get(Badge, 1)
    assert foo3 is not None and badge is not None
    foo3.badge
    badge.foo = foo3
    assert badge is foo3.badge
    badge.foo_id = 7
    assert foo3.badge is None
    session.commit()
    with Session(engine) as other:
        assert 7 == other.scalar(select(Badge.foo_id))


def test_self_referential(engine: Engine) -> None:
    """A node moved under another node: its parent and both parents' children follow."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Node(id=1), Node(id=2)])
        session.flush()
        session.add(Node(id=3, parent_id=1))
        session.commit()
        one, two, three = session.get(Node, 1), session.get(Node, 2), session.get(Node, 3)
        assert one is not None and two is not None and three is not None
        one.children, two.children, three.parent
        three.parent_id = 2
        assert (2, [], [3]) == (present(three.parent).id, ids(one.children), ids(two.children))


def test_composite_foreign_key(engine: Engine) -> None:
    """Both columns of a composite key set: the book is on the new shelf, and the shelves know it."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Shelf(room="a", number=1), Shelf(room="b", number=2)])
        session.flush()
        session.add(Book(id=1, room="a", number=1))
        session.commit()
        a1, b2, book = session.get(Shelf, ("a", 1)), session.get(Shelf, ("b", 2)), session.get(Book, 1)
        assert a1 is not None and b2 is not None and book is not None
        a1.books, b2.books, book.shelf
        book.room, book.number = "b", 2
        assert (b2, [], [1]) == (book.shelf, ids(a1.books), ids(b2.books))


def test_foreign_key_to_unique_column(session: Session) -> None:
    """A key to a non-primary column: the many-to-one and the old parent's collection follow."""
    tag = Tag(id=1, foo_code="a")
    session.add(tag)
    session.commit()
    foo1, foo7 = session.get(Foo, 1), session.get(Foo, 7)
    assert foo1 is not None and foo7 is not None
    tag.foo, foo1.tags, foo7.tags
    tag.foo_code = "g"
    assert (7, []) == (present(tag.foo).id, foo1.tags)


def test_foreign_key_to_unique_column_new_parent_gains_the_object(session: Session) -> None:
    """Without the primary key the new parent cannot be looked up: every loaded Foo.tags is expired instead."""
    tag = Tag(id=1, foo_code="a")
    session.add(tag)
    session.commit()
    foo7 = session.get(Foo, 7)
    assert foo7 is not None
    foo7.tags
    tag.foo_code = "g"
    assert [1] == ids(foo7.tags)


def test_parents_are_swept_once_between_flushes(session: Session) -> None:
    """The pass over the session for an unknown parent is made once per relationship until the next flush."""
    session.add_all([Tag(id=1, foo_code="a"), Tag(id=2, foo_code="a")])
    session.commit()
    tag1, tag2, foo7 = session.get(Tag, 1), session.get(Tag, 2), session.get(Foo, 7)
    assert tag1 is not None and tag2 is not None and foo7 is not None
    tag1.foo_code = "g"
    with session.no_autoflush:
        foo7.tags  # reloaded without flushing: the rows as stored
    tag2.foo_code = "g"
    swept_again = "tags" not in inspect(foo7).dict
    session.flush()
    tag1.foo_code = "c"
    assert (False, False) == (swept_again, "tags" in inspect(foo7).dict)


# -- collections of any size ---------------------------------------------------------------------


def test_a_set_walks_no_collection(engine: Engine) -> None:
    """The parent's collection holds an unflushed append: a set costs the same whatever its size (it is not walked)."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Crate(id=1), Crate(id=2)])
        session.flush()
        session.execute(insert(Bottle), [{"id": i, "crate_id": 1} for i in range(1, 201)])
        session.commit()
        crate1, crate2 = session.get(Crate, 1), session.get(Crate, 2)
        assert crate1 is not None and crate2 is not None
        crate1.bottles.append(Bottle(id=500))
        crate2.bottles
        moved = list(crate1.bottles)[:20]
        ITERATIONS[0] = 0
        for bottle in moved:
            bottle.crate_id = 2
        assert 0 == ITERATIONS[0]


def test_collection_with_unflushed_append_keeps_the_moved_object(engine: Engine) -> None:
    """Limit: a collection with changes of its own is not expired, so it still lists an object moved away by its key."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Crate(id=1), Crate(id=2)])
        session.flush()
        session.add(Bottle(id=1, crate_id=1))
        session.commit()
        crate1, bottle = session.get(Crate, 1), session.get(Bottle, 1)
        assert crate1 is not None and bottle is not None
        crate1.bottles.append(Bottle(id=2))
        bottle.crate_id = 2
        assert [1, 2] == ids(crate1.bottles)


def test_dataclass_mapping(engine: Engine) -> None:
    """MappedAsDataclass: keyword construction is quiet, later sets follow."""

    class DataBase(MappedAsDataclass, DeclarativeBase):
        pass

    ExpireRelationshipOnFKChange.install(DataBase)

    class Team(DataBase):
        __tablename__ = "team"
        id: Mapped[int] = mapped_column(primary_key=True)

    class Player(DataBase):
        __tablename__ = "player"
        id: Mapped[int] = mapped_column(primary_key=True)
        team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id"), default=None)
        team: Mapped[Team | None] = relationship(init=False)

    DataBase.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Team(id=1), Team(id=2)])
        session.flush()
        session.add(Player(id=1, team_id=1))
        session.commit()
        player = session.get(Player, 1)
        assert player is not None
        assert 1 == present(player.team).id
        player.team_id = 2
        assert 2 == present(player.team).id


# -- installing --------------------------------------------------------------------------------


def test_watched_names_each_attribute_and_its_relationships() -> None:
    """watched() reports what install() found."""
    assert {
        "Badge.foo_id": ["Badge.foo", "Foo.badge"],
        "Bar.foo_id": ["Bar.foo", "Bar.foo_view", "Foo.bars"],
        "Book.number": ["Book.shelf", "Shelf.books"],
        "Book.room": ["Book.shelf", "Shelf.books"],
        "Bottle.crate_id": ["Bottle.crate", "Crate.bottles"],
        "Car.garage_id": ["Car.garage", "Garage.cars"],
        "Child.parent_id": ["Parent.children"],
        "Node.parent_id": ["Node.children", "Node.parent"],
        "Pet.owner_id": ["Owner.pets", "Pet.owner"],
        "SpecialBar.owner_id": ["SpecialBar.owner"],
        "Tag.foo_code": ["Foo.tags", "Tag.foo"],
    } == FK_SYNC.watched()


def test_install_after_the_classes_are_configured(engine: Engine) -> None:
    """Installing late covers the classes already mapped and configured."""

    class LateBase(DeclarativeBase):
        pass

    class Box(LateBase):
        __tablename__ = "box"
        id: Mapped[int] = mapped_column(primary_key=True)

    class Item(LateBase):
        __tablename__ = "item"
        id: Mapped[int] = mapped_column(primary_key=True)
        box_id: Mapped[int | None] = mapped_column(ForeignKey("box.id"))
        box: Mapped[Box | None] = relationship()

    configure_mappers()
    ExpireRelationshipOnFKChange.install(LateBase)
    LateBase.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Box(id=1), Box(id=2), Item(id=1, box_id=1)])
        session.commit()
        item = session.get(Item, 1)
        assert item is not None
        item.box
        item.box_id = 2
        assert 2 == present(item.box).id


def test_install_on_a_registry(engine: Engine) -> None:
    """A registry works as well as a declarative base."""
    mapper_registry = registry()
    ExpireRelationshipOnFKChange.install(mapper_registry)

    @mapped_as_dataclass(mapper_registry)
    class Room:
        __tablename__ = "room"
        id: Mapped[int] = mapped_column(primary_key=True)

    @mapped_as_dataclass(mapper_registry)
    class Lamp:
        __tablename__ = "lamp"
        id: Mapped[int] = mapped_column(primary_key=True)
        room_id: Mapped[int | None] = mapped_column(ForeignKey("room.id"))
        room: Mapped[Room | None] = relationship(init=False)

    mapper_registry.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Room(id=1), Room(id=2)])
        session.flush()
        session.add(Lamp(id=1, room_id=1))
        session.commit()
        lamp = session.get(Lamp, 1)
        assert lamp is not None
        lamp.room
        lamp.room_id = 2
        assert 2 == present(lamp.room).id


def test_install_twice_returns_the_same_instance() -> None:
    """One registry is watched once, however often install() is called."""
    assert FK_SYNC is ExpireRelationshipOnFKChange.install(Base.registry)


def test_install_refuses_other_targets() -> None:
    """Something that has no registry is refused with TypeError."""
    with pytest.raises(TypeError, match="declarative base or a registry"):
        ExpireRelationshipOnFKChange.install(object)


def test_install_refuses_a_mapped_class() -> None:
    """A mapped class is not its base: install() says to pass the base or the registry."""
    with pytest.raises(TypeError, match="not the mapped class Bar"):
        ExpireRelationshipOnFKChange.install(Bar)


def test_install_refuses_an_instance() -> None:
    """An instance has a registry attribute through its class, but is not a base."""
    with pytest.raises(TypeError, match="needs a declarative base or a registry"):
        ExpireRelationshipOnFKChange.install(Foo())  # type: ignore[arg-type]  # the wrong type is the point of the test


def test_remove_restores_the_plain_behaviour(engine: Engine) -> None:
    """After remove(), bar.foo keeps its old value again, as without the recipe."""

    class RemovedBase(DeclarativeBase):
        pass

    installed = ExpireRelationshipOnFKChange.install(RemovedBase)

    class Pen(RemovedBase):
        __tablename__ = "pen"
        id: Mapped[int] = mapped_column(primary_key=True)

    class Cap(RemovedBase):
        __tablename__ = "cap"
        id: Mapped[int] = mapped_column(primary_key=True)
        pen_id: Mapped[int | None] = mapped_column(ForeignKey("pen.id"))
        pen: Mapped[Pen | None] = relationship()

    RemovedBase.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Pen(id=1), Pen(id=2), Cap(id=1, pen_id=1)])
        session.commit()
        installed.remove()
        cap = session.get(Cap, 1)
        assert cap is not None
        cap.pen
        cap.pen_id = 2
        assert 1 == present(cap.pen).id
    assert installed is not ExpireRelationshipOnFKChange.install(RemovedBase)


def test_calling_the_class_is_install() -> None:
    """The constructor does what install() does: one watching instance per registry."""

    class Base(DeclarativeBase):
        pass

    assert ExpireRelationshipOnFKChange(Base) is ExpireRelationshipOnFKChange.install(Base.registry)
    ExpireRelationshipOnFKChange(Base).remove()


def test_the_class_refuses_what_is_not_a_base_or_registry() -> None:
    """A wrong argument says what was expected."""
    with pytest.raises(TypeError, match="needs a declarative base or a registry, not 7"):
        ExpireRelationshipOnFKChange(7)  # type: ignore[arg-type]  # the wrong type is the point of the test


# -- with an AsyncSession ----------------------------------------------------------------------
# A set runs the listener in plain Python, outside the greenlet an AsyncSession does its IO in:
# it must send nothing (any SQL there would raise MissingGreenlet).  What it expires, the reader
# loads with an await; what the identity map holds needs none.


@pytest.fixture
def stored(engine: Engine) -> Engine:
    """Foos 1, 3 and 7 and bars 1 and 2, committed, for an AsyncSession to read."""
    add_foos_and_bars(engine)
    return engine


async def foos_and_bar(session: AsyncSession) -> tuple[Foo, Foo, Bar]:
    """Foo 1 and Foo 7 with their collections loaded, and Bar 1 with its foo loaded."""
    foo1, foo7, bar = (
        present(await session.get(Foo, 1)),
        present(await session.get(Foo, 7)),
        present(await session.get(Bar, 1)),
    )
    await foo1.awaitable_attrs.bars
    await foo7.awaitable_attrs.bars
    await bar.awaitable_attrs.foo
    return foo1, foo7, bar


def test_async_set_sends_nothing_and_the_loaded_parent_follows(stored: Engine, aio: AsyncRun) -> None:
    """bar.foo_id = 7 in a coroutine: no SQL at the set, and bar.foo is Foo 7 from the identity map, with no await."""

    async def body() -> tuple[list[str], bool, list[str]]:
        async with AsyncSession(aio.engine) as session:
            _, foo7, bar = await foos_and_bar(session)
            with statements(aio.engine.sync_engine) as at_set:
                bar.foo_id = 7
            with statements(aio.engine.sync_engine) as at_read:
                follows = bar.foo is foo7
            return at_set, follows, at_read

    assert ([], True, []) == aio.run(body())


def test_async_collections_are_expired_and_awaited(stored: Engine, aio: AsyncRun) -> None:
    """Both loaded collections are expired at the set; awaiting them autoflushes and reads the new rows."""

    async def body() -> tuple[list[str], list[int], list[int]]:
        async with AsyncSession(aio.engine) as session:
            foo1, foo7, bar = await foos_and_bar(session)
            bar.foo_id = 7
            unloaded = [key for foo in (foo1, foo7) for key in ["bars"] if key not in inspect(foo).dict]
            return unloaded, ids(await foo1.awaitable_attrs.bars), ids(await foo7.awaitable_attrs.bars)

    assert (["bars", "bars"], [2], [1]) == aio.run(body())


def test_async_refresh_reads_the_collection(stored: Engine, aio: AsyncRun) -> None:
    """await session.refresh(foo7, ["bars"]) autoflushes the new key first: Foo 7's collection lists bar."""

    async def body() -> tuple[list[int], list[int]]:
        async with AsyncSession(aio.engine) as session:
            foo1, foo7, bar = await foos_and_bar(session)
            bar.foo_id = 7
            await session.refresh(foo7, ["bars"])
            await session.refresh(foo1, ["bars"])
            return ids(foo1.bars), ids(foo7.bars)

    assert ([2], [1]) == aio.run(body())


def test_async_parent_not_loaded_is_awaited(stored: Engine, aio: AsyncRun) -> None:
    """Foo 3 is not in the session: awaitable_attrs or refresh() loads it, before the flush, from the key just set."""

    async def body() -> tuple[int, int, int | None]:
        async with AsyncSession(aio.engine) as session:
            _, _, bar = await foos_and_bar(session)
            bar.foo_id = 3
            awaited = present(await bar.awaitable_attrs.foo).id
            bar.foo_id = 1
            await session.refresh(bar, ["foo"])
            return awaited, present(bar.foo).id, bar.foo_id

    assert (3, 1, 1) == aio.run(body())


def test_async_plain_read_of_an_expired_collection_needs_an_await(stored: Engine, aio: AsyncRun) -> None:
    """What the reader must not do: read an expired collection without await. Its load autoflushes outside the
    greenlet, so the flush fails with MissingGreenlet and the session must be rolled back."""

    async def body() -> tuple[str, type[Exception], list[int]]:
        async with AsyncSession(aio.engine) as session:
            foo1, _, bar = await foos_and_bar(session)
            bar.foo_id = 7
            with pytest.raises((InvalidRequestError, StatementError)) as raised:
                foo1.bars
            with pytest.raises(PendingRollbackError) as after:
                await foo1.awaitable_attrs.bars
            await session.rollback()
            return str(raised.value), after.type, ids(await foo1.awaitable_attrs.bars)

    try:
        message, after, rolled_back = aio.run(body())
    finally:
        # The driver's coroutine that never ran is collected here, not in whichever test runs next.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
            gc.collect()
    assert ("greenlet_spawn has not been called", PendingRollbackError, [1, 2]) == (
        message[message.index("greenlet_spawn") : message.index(";")],
        after,
        rolled_back,
    )


def test_async_pending_object_loads_its_parent(stored: Engine, aio: AsyncRun) -> None:
    """An added Bar: foo_id = 7 finds the loaded Foo 7 with no await; foo_id = 3 is awaited through
    awaitable_attrs, before the INSERT (refresh() takes persistent objects only)."""

    async def body() -> tuple[list[str], bool, int, bool]:
        async with AsyncSession(aio.engine) as session:
            _, foo7, _ = await foos_and_bar(session)
            bar = Bar(id=10)
            session.add(bar)
            with statements(aio.engine.sync_engine) as sent:
                bar.foo_id = 7
                found = bar.foo is foo7
            bar.foo_id = 3
            with pytest.raises(InvalidRequestError, match="is not persistent within this Session"):
                await session.refresh(bar, ["foo"])
            awaited = present(await bar.awaitable_attrs.foo).id
            return sent, found, awaited, inspect(bar).pending

    assert ([], True, 3, True) == aio.run(body())


def test_async_refused_set_raises_its_own_error(stored: Engine, aio: AsyncRun) -> None:
    """bar.foo = None then bar.foo_id = 7 is refused in a coroutine too, with the recipe's error, before any SQL."""

    async def body() -> list[str]:
        async with AsyncSession(aio.engine) as session:
            _, _, bar = await foos_and_bar(session)
            bar.foo = None
            with statements(aio.engine.sync_engine) as sent, pytest.raises(InvalidRequestError, match="taken out of"):
                bar.foo_id = 7
            return sent

    assert [] == aio.run(body())


def test_async_sql_expression_key_expires_without_sql(stored: Engine, aio: AsyncRun) -> None:
    """A key set to a SQL expression names no parent yet: the loaded collections are expired, without SQL."""

    async def body() -> tuple[list[str], list[int], list[int]]:
        async with AsyncSession(aio.engine) as session:
            foo1, foo7, bar = await foos_and_bar(session)
            with statements(aio.engine.sync_engine) as sent:
                bar.foo_id = select(Foo.id).where(Foo.code == "g").scalar_subquery()
            await session.flush()
            return sent, ids(await foo1.awaitable_attrs.bars), ids(await foo7.awaitable_attrs.bars)

    assert ([], [2], [1]) == aio.run(body())


def test_async_commit_writes_the_key_set_last(stored: Engine, aio: AsyncRun) -> None:
    """bar.foo = foo3 then bar.foo_id = 7 in an AsyncSession: the commit writes 7, as in a Session."""

    async def body() -> None:
        async with AsyncSession(aio.engine) as session:
            _, _, bar = await foos_and_bar(session)
            bar.foo = present(await session.get(Foo, 3))
            bar.foo_id = 7
            await session.commit()

    aio.run(body())
    assert 7 == stored_foo_id(stored, 1)
