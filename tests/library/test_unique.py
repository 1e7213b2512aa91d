"""UniqueObject: one object per unique key, on every backend, under races."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, InvalidRequestError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_scoped_session,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    MappedAsDataclass,
    ORMExecuteState,
    Session,
    mapped_column,
    relationship,
    scoped_session,
    sessionmaker,
    validates,
    with_loader_criteria,
)
from sqlalchemy.util import await_only

from sqlalchemy_cookbook import UniqueObject
from sqlalchemy_cookbook import unique as unique_module
from tests.harness.backends import Backend
from tests.library.aio import AsyncRun
from tests.library.statements import statements

if TYPE_CHECKING:  # ForkContext exists only where fork does (not on Windows)
    from multiprocessing.context import ForkContext, SpawnContext

# --- the models -----------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Category(Base):
    __tablename__ = "category"

    id: Mapped[int] = mapped_column(primary_key=True)


class Keyword(UniqueObject, Base):
    __tablename__ = "keyword"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    note: Mapped[str | None] = mapped_column(String(50))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("category.id"))
    category: Mapped[Category | None] = relationship()


class Word(UniqueObject, Base):
    """A composite key, named because the table has two unique column sets."""

    __tablename__ = "word"
    __table_args__ = (UniqueConstraint("language", "text"), Index("ix_word_slug", "slug", unique=True))
    __unique_key__ = ("language", "text")

    id: Mapped[int] = mapped_column(primary_key=True)
    language: Mapped[str] = mapped_column(String(5))
    text: Mapped[str] = mapped_column(String(50))
    slug: Mapped[str | None] = mapped_column(String(60))


class Lowered(UniqueObject, Base):
    """A validator that changes the key on the way in."""

    __tablename__ = "lowered"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)

    @validates("name")
    def _lower(self, key: str, value: str) -> str:
        return value.lower()


class Code(UniqueObject, Base):
    """The key is the primary key."""

    __tablename__ = "code"
    __unique_key__ = ("code",)

    code: Mapped[str] = mapped_column(String(10), primary_key=True)
    label: Mapped[str | None] = mapped_column(String(50))


class Animal(UniqueObject, Base):
    """Single-table inheritance: one key across every subclass's rows."""

    __tablename__ = "animal"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    kind: Mapped[str] = mapped_column(String(10))

    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "animal"}


class Dog(Animal):
    __mapper_args__ = {"polymorphic_identity": "dog"}


class Cat(Animal):
    __mapper_args__ = {"polymorphic_identity": "cat"}


class Label(UniqueObject, Base):
    """The key's attribute is named unlike its column."""

    __tablename__ = "label"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column("label_text", String(50), unique=True)


class DataclassBase(MappedAsDataclass, DeclarativeBase):
    pass


class Tag(UniqueObject, DataclassBase):
    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(primary_key=True, init=False)
    label: Mapped[str] = mapped_column(String(50), unique=True)
    colour: Mapped[str] = mapped_column(String(20), default="grey")
    origin: Mapped[str] = mapped_column(String(20), default_factory=lambda: "factory")


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tables(database_url: URL) -> Iterator[URL]:
    """The tables, made once per backend (each test empties them first)."""
    engine = create_engine(database_url)
    Base.metadata.create_all(engine)
    DataclassBase.metadata.create_all(engine)
    engine.dispose()
    yield database_url
    engine = create_engine(database_url)
    DataclassBase.metadata.drop_all(engine)
    Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def db(tables: URL) -> Iterator[Engine]:
    """An engine on empty tables."""
    engine = create_engine(tables)
    with engine.begin() as conn:
        for table in [*reversed(Base.metadata.sorted_tables), *DataclassBase.metadata.sorted_tables]:
            conn.execute(table.delete())
    yield engine
    engine.dispose()


def verbs(sent: list[str]) -> list[str]:
    return [statement.split(None, 1)[0].upper() for statement in sent]


def names_in_database(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(Keyword.name).order_by(Keyword.name)))


# --- one key ---------------------------------------------------------------------------------


def test_same_key_gives_same_object(db: Engine) -> None:
    """Two calls for one key in one session return one object."""
    with Session(db) as session:
        first = Keyword.as_unique(session, name="python")
        assert first is Keyword.as_unique(session, name="python")


def test_cache_hit_sends_no_sql(db: Engine) -> None:
    """The second call for a key the session holds costs no statement."""
    with Session(db) as session:
        Keyword.as_unique(session, name="python")
        with statements(db) as sent:
            Keyword.as_unique(session, name="python")
    assert [] == sent


def test_new_key_costs_a_select_and_an_insert(db: Engine) -> None:
    """A key the database does not have: one SELECT, one INSERT (target: at most 2)."""
    with Session(db) as session:
        session.connection()
        with statements(db) as sent:
            Keyword.as_unique(session, name="python")
    assert ["SELECT", "INSERT"] == verbs(sent)


def test_existing_row_costs_one_select(db: Engine) -> None:
    """A key whose row exists is read with one SELECT, and that row is the object."""
    with Session(db) as session:
        session.add(Keyword(name="python"))
        session.commit()
        row_id = session.scalars(select(Keyword.id)).one()
    with Session(db) as session:
        session.connection()
        with statements(db) as sent:
            keyword = Keyword.as_unique(session, name="python")
        assert (["SELECT"], row_id) == (verbs(sent), keyword.id)


def test_new_object_is_persistent_and_in_the_database(db: Engine) -> None:
    """A created object is persistent at once; its row is there without a flush."""
    with Session(db) as session:
        keyword = Keyword.as_unique(session, name="python")
        state = inspect(keyword)
        assert (True, ["python"]) == (state.persistent, list(session.scalars(select(Keyword.name))))


def test_other_values_apply_only_on_creation(db: Engine) -> None:
    """Values outside the key fill a new row; they never change an existing one."""
    with Session(db) as session:
        Keyword.as_unique(session, name="python", note="first")
        session.commit()
        assert "first" == Keyword.as_unique(session, name="python", note="second").note


def test_commit_keeps_one_row(db: Engine) -> None:
    """Many calls for one key across sessions leave one row."""
    for _ in range(3):
        with Session(db) as session:
            Keyword.as_unique(session, name="python")
            session.commit()
    assert ["python"] == names_in_database(db)


# --- many keys ---------------------------------------------------------------------------------


def test_bulk_returns_objects_in_order(db: Engine) -> None:
    """as_unique_all answers in the order asked, the same object for a repeated key."""
    with Session(db) as session:
        found = Keyword.as_unique_all(session, [{"name": "b"}, {"name": "a"}, {"name": "b"}])
        assert (["b", "a", "b"], True) == ([k.name for k in found], found[0] is found[2])


@pytest.mark.parametrize("count", [10, 100, 1000])
def test_bulk_statement_count_does_not_grow(db: Engine, count: int) -> None:
    """New keys in bulk: one SELECT and one INSERT, whatever their number (target: at most 3)."""
    with Session(db) as session:
        session.connection()
        with statements(db) as sent:
            found = Keyword.as_unique_all(session, [{"name": f"k{i}"} for i in range(count)])
        assert (["SELECT", "INSERT"], count) == (verbs(sent), len({k.id for k in found}))


def test_bulk_mixes_cached_existing_and_new(db: Engine) -> None:
    """Cached keys cost nothing, existing ones one SELECT between them, new ones one INSERT."""
    with Session(db) as session:
        session.add(Keyword(name="existing"))
        session.commit()
        cached = Keyword.as_unique(session, name="cached")
        with statements(db) as sent:
            found = Keyword.as_unique_all(session, [{"name": "cached"}, {"name": "existing"}, {"name": "new"}])
        assert (["SELECT", "INSERT"], cached) == (verbs(sent), found[0])
        session.commit()
    assert ["cached", "existing", "new"] == names_in_database(db)


def test_bulk_of_cached_keys_sends_no_sql(db: Engine) -> None:
    """A bulk call whose keys the session holds costs nothing."""
    with Session(db) as session:
        Keyword.as_unique_all(session, [{"name": "a"}, {"name": "b"}])
        with statements(db) as sent:
            Keyword.as_unique_all(session, [{"name": "b"}, {"name": "a"}])
    assert [] == sent


def test_empty_bulk_call(db: Engine) -> None:
    """Asking for nothing returns nothing and sends nothing."""
    with Session(db) as session:
        with statements(db) as sent:
            found = Keyword.as_unique_all(session, [])
    assert ([], []) == (found, sent)


# --- the cache cannot hand back a dead object ------------------------------------------------------


def test_commit_empties_the_cache(db: Engine) -> None:
    """After commit the key is looked up again, and the object is persistent."""
    with Session(db) as session:
        Keyword.as_unique(session, name="python")
        session.commit()
        with statements(db) as sent:
            keyword = Keyword.as_unique(session, name="python")
        assert (["SELECT"], True) == (verbs(sent), inspect(keyword).persistent)


def test_rollback_forgets_the_objects_it_took_back(db: Engine) -> None:
    """A key created in a rolled-back transaction is created again: its row exists after commit."""
    with Session(db) as session:
        Keyword.as_unique(session, name="python")
        session.rollback()
        keyword = Keyword.as_unique(session, name="python")
        session.commit()
        assert (True, ["python"]) == (inspect(keyword).persistent, names_in_database(db))


def test_close_does_not_hand_back_a_detached_object(db: Engine) -> None:
    """After close, the reused session gets a persistent object, not the detached one."""
    session = Session(db)
    old = Keyword.as_unique(session, name="python")
    session.commit()
    session.close()
    keyword = Keyword.as_unique(session, name="python")
    assert (True, True) == (inspect(old).detached, inspect(keyword).persistent)
    session.close()


def test_row_deleted_elsewhere_is_created_again(db: Engine) -> None:
    """A key whose row another session deleted after our commit gets its row back, not an error."""
    with Session(db, expire_on_commit=False) as session:
        Keyword.as_unique(session, name="python")
        session.commit()
        with Session(db) as other:
            other.delete(other.scalars(select(Keyword)).one())
            other.commit()
        keyword = Keyword.as_unique(session, name="python")
        session.commit()
        assert [keyword.id] == list(session.scalars(select(Keyword.id)))


def test_expunged_object_is_not_handed_back(db: Engine) -> None:
    """An object expunged from the session is replaced by the session's own copy of the row."""
    with Session(db) as session:
        old = Keyword.as_unique(session, name="python")
        session.expunge(old)
        keyword = Keyword.as_unique(session, name="python")
        assert (False, True) == (keyword is old, inspect(keyword).persistent)


def test_expired_object_is_checked_against_the_database(db: Engine) -> None:
    """After expire_all() the key is read again; the row is the same object."""
    with Session(db) as session:
        old = Keyword.as_unique(session, name="python")
        session.expire_all()
        with statements(db) as sent:
            keyword = Keyword.as_unique(session, name="python")
        assert (["SELECT"], True) == (verbs(sent), keyword is old)


def test_object_deleted_in_the_session_is_replaced(db: Engine) -> None:
    """A key whose object the session deleted gets a new row (autoflush sends the DELETE first)."""
    with Session(db) as session:
        old = Keyword.as_unique(session, name="python")
        session.delete(old)
        keyword = Keyword.as_unique(session, name="python")
        session.commit()
        assert (False, ["python"]) == (keyword is old, list(session.scalars(select(Keyword.name))))


def test_object_marked_for_deletion_without_autoflush_is_refused(db: Engine) -> None:
    """With autoflush off, a key whose object awaits deletion is an error, not a dead object."""
    with Session(db, autoflush=False) as session:
        old = Keyword.as_unique(session, name="python")
        session.delete(old)
        with pytest.raises(InvalidRequestError, match="marked for deletion"):
            Keyword.as_unique(session, name="python")


def test_savepoint_rollback_forgets_objects_created_inside(db: Engine) -> None:
    """A key created inside a rolled-back SAVEPOINT is created again after it (the savepoint fix on SQLite)."""
    sqlite_savepoints(db)
    with Session(db) as session:
        savepoint = session.begin_nested()
        Keyword.as_unique(session, name="python")
        savepoint.rollback()
        keyword = Keyword.as_unique(session, name="python")
        session.commit()
        assert (True, ["python"]) == (inspect(keyword).persistent, names_in_database(db))


def test_each_session_has_its_own_cache(db: Engine) -> None:
    """Two sessions get two objects for one row."""
    with Session(db) as first, Session(db) as second:
        a = Keyword.as_unique(first, name="python")
        first.commit()
        b = Keyword.as_unique(second, name="python")
        assert (False, a.id) == (a is b, b.id)


# --- keys changed after the object was handed out --------------------------------------------------


def test_renamed_object_is_not_handed_out_for_its_old_key(db: Engine) -> None:
    """keyword.name = "renamed" and a flush: asking for "orig" again gives a row named "orig", not the renamed one."""
    with Session(db) as session:
        renamed = Keyword.as_unique(session, name="orig")
        renamed.name = "renamed"
        session.flush()
        found = Keyword.as_unique(session, name="orig")
        assert (False, "orig") == (found is renamed, found.name)


def test_unflushed_rename_is_not_handed_out_for_its_old_key(db: Engine) -> None:
    """The same without the flush: the SELECT autoflushes the rename, and "orig" gets a row of its own."""
    with Session(db) as session:
        renamed = Keyword.as_unique(session, name="orig")
        renamed.name = "renamed"
        found = Keyword.as_unique(session, name="orig")
        session.commit()
        assert (False, ["orig", "renamed"]) == (found is renamed, names_in_database(db))


def test_renamed_object_is_found_under_its_new_key(db: Engine) -> None:
    """The renamed object is the one for its new key."""
    with Session(db) as session:
        renamed = Keyword.as_unique(session, name="orig")
        renamed.name = "renamed"
        assert renamed is Keyword.as_unique(session, name="renamed")


def test_update_statement_empties_the_cache(db: Engine) -> None:
    """An UPDATE with synchronize_session=False leaves the object as it was, but the cache asks the database again."""
    with Session(db) as session:
        stale = Keyword.as_unique(session, name="orig")
        statement = update(Keyword).where(Keyword.name == "orig").values(name="renamed")
        session.execute(statement.execution_options(synchronize_session=False))
        found = Keyword.as_unique(session, name="orig")
        session.commit()
        assert (False, ["orig", "renamed"]) == (found is stale, names_in_database(db))


def test_textual_delete_empties_the_cache(db: Engine) -> None:
    """A DELETE in textual SQL takes the row away: the next call writes it again."""
    with Session(db) as session:
        Keyword.as_unique(session, name="python")
        session.execute(text("DELETE FROM keyword"))
        Keyword.as_unique(session, name="python")
        session.commit()
    assert ["python"] == names_in_database(db)


def test_validator_key_is_found_in_a_later_transaction(db: Engine) -> None:
    """A key the validator lower-cases, asked for again in a new transaction: the row is found, not an error."""
    with Session(db) as session:
        first = Lowered.as_unique(session, name="MixedCase").id
        session.commit()
        assert first == Lowered.as_unique(session, name="MixedCase").id


def test_validator_key_in_a_later_transaction_costs_a_second_select(db: Engine, backend: Backend) -> None:
    """What that costs: the SELECT misses "MixedCase", the INSERT of "mixedcase" writes nothing, a SELECT finds it.

    MariaDB's case-insensitive collation finds the row with the first SELECT.
    """
    with Session(db) as session:
        Lowered.as_unique(session, name="MixedCase")
        session.commit()
        session.connection()
        with statements(db) as sent:
            Lowered.as_unique(session, name="MixedCase")
    expected = {"sqlite": ["SELECT", "INSERT", "SELECT"], "postgresql": ["SELECT", "INSERT", "SELECT"]}
    assert expected.get(backend.name, ["SELECT"]) == verbs(sent)


# --- rollbacks take back the rows inserted ------------------------------------------------------------


def test_savepoint_rollback_makes_created_objects_transient(db: Engine) -> None:
    """An object whose row was inserted inside a rolled-back SAVEPOINT has no row: it is transient, not persistent."""
    sqlite_savepoints(db)
    with Session(db) as session:
        savepoint = session.begin_nested()
        keyword = Keyword.as_unique(session, name="python")
        savepoint.rollback()
        assert (True, False) == (inspect(keyword).transient, inspect(keyword).persistent)


def test_rollback_makes_created_objects_transient(db: Engine) -> None:
    """The same for the whole transaction, as SQLAlchemy does for objects its flush inserted."""
    with Session(db) as session:
        keyword = Keyword.as_unique(session, name="python")
        session.rollback()
        assert (True, "python") == (inspect(keyword).transient, keyword.name)


def test_outer_savepoint_rollback_takes_back_a_released_one(db: Engine) -> None:
    """A row inserted in a released SAVEPOINT goes with the enclosing one when that is rolled back."""
    sqlite_savepoints(db)
    with Session(db) as session:
        outer = session.begin_nested()
        with session.begin_nested():
            keyword = Keyword.as_unique(session, name="python")
        outer.rollback()
        assert inspect(keyword).transient


def test_failed_flush_in_savepoint_takes_back_the_rows(db: Engine) -> None:
    """A flush failing inside the SAVEPOINT rolls it back, with the rows inserted there."""
    sqlite_savepoints(db)
    with Session(db) as session:
        session.add(Keyword(name="taken"))
        session.commit()
        with pytest.raises(IntegrityError), session.begin_nested():
            keyword = Keyword.as_unique(session, name="python")
            session.add(Keyword(name="taken"))
            session.flush()
        assert inspect(keyword).transient


def test_created_and_deleted_in_rolled_back_savepoint_is_transient(db: Engine) -> None:
    """Created, deleted and flushed, then the SAVEPOINT rolled back: transient, not restored as persistent."""
    sqlite_savepoints(db)
    with Session(db) as session:
        savepoint = session.begin_nested()
        keyword = Keyword.as_unique(session, name="python")
        session.delete(keyword)
        session.flush()
        savepoint.rollback()
        assert inspect(keyword).transient


def test_found_object_stays_after_savepoint_rollback(db: Engine) -> None:
    """An object whose row existed before the SAVEPOINT stays persistent when it is rolled back."""
    sqlite_savepoints(db)
    with Session(db) as session:
        session.add(Keyword(name="python"))
        session.commit()
        savepoint = session.begin_nested()
        keyword = Keyword.as_unique(session, name="python")
        savepoint.rollback()
        assert inspect(keyword).persistent


def test_row_another_transaction_inserted_counts_as_created_on_mariadb(db: Engine, backend: Backend) -> None:
    """Limit: MariaDB's INSERT hands back a row committed between our SELECT and INSERT, as if it wrote it.

    After a rollback that object is transient though its row exists; elsewhere the locking SELECT
    reads it, and it stays persistent.
    """
    other_engine = create_engine(db.url)
    other_wants = ["python"]

    @event.listens_for(db, "before_cursor_execute")
    def other_gets_there_first(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT") and other_wants:
            with Session(other_engine) as other:
                other.add(Keyword(name=other_wants.pop()))
                other.commit()

    try:
        with Session(db) as session:
            keyword = Keyword.as_unique(session, name="python")
            session.rollback()
            transient = inspect(keyword).transient
    finally:
        event.remove(db, "before_cursor_execute", other_gets_there_first)
        other_engine.dispose()
    assert (backend.name == "mariadb", ["python"]) == (transient, names_in_database(db))


# --- autoflush off --------------------------------------------------------------------------------


def test_autoflush_off_pending_key_is_refused(db: Engine) -> None:
    """With autoflush off, a key an added object holds is not in the database yet: refused, not inserted twice."""
    with Session(db, autoflush=False) as session:
        session.add(Keyword(name="python"))
        with pytest.raises(InvalidRequestError, match="in memory only"):
            Keyword.as_unique(session, name="python")


def test_autoflush_off_key_renamed_to_is_refused(db: Engine) -> None:
    """With autoflush off, a key an object was renamed to (not flushed) is refused."""
    with Session(db, autoflush=False) as session:
        keyword = Keyword.as_unique(session, name="orig")
        keyword.name = "renamed"
        with pytest.raises(InvalidRequestError, match="in memory only"):
            Keyword.as_unique(session, name="renamed")


def test_autoflush_off_key_renamed_away_is_refused(db: Engine) -> None:
    """With autoflush off, the row of a key whose object was renamed (not flushed) belongs to neither: refused."""
    with Session(db, autoflush=False) as session:
        keyword = Keyword.as_unique(session, name="orig")
        session.commit()
        keyword.name = "renamed"
        with pytest.raises(InvalidRequestError, match="changed in this session and not flushed"):
            Keyword.as_unique(session, name="orig")


# --- what it is given --------------------------------------------------------------------------------


def test_session_none_is_a_type_error() -> None:
    """None instead of a session says what was given and what is expected."""
    with pytest.raises(TypeError, match=r"needs a sqlalchemy.orm.Session as its first argument, not None"):
        Keyword.as_unique(None, name="python")  # type: ignore[arg-type]  # the wrong type is the point of the test


def test_scoped_session_is_refused_with_a_hint(db: Engine) -> None:
    """A scoped_session is not a Session: the error says how to get one."""
    scoped = scoped_session(sessionmaker(db))
    try:
        with pytest.raises(TypeError, match=r"a scoped_session\); call the scoped_session"):
            Keyword.as_unique(scoped, name="python")  # type: ignore[arg-type]  # the wrong type is the point
    finally:
        scoped.remove()


def test_unmapped_class_is_a_type_error() -> None:
    """A class that mixes in UniqueObject but is not mapped says so."""

    class Unmapped(UniqueObject):
        pass

    with pytest.raises(TypeError, match="Unmapped is not mapped"):
        Unmapped.as_unique(Session(), name="python")


def test_rows_none_is_a_type_error() -> None:
    """as_unique_all() needs an iterable of mappings; None says so."""
    with pytest.raises(TypeError, match="takes an iterable of mappings, one per object .*, not None"):
        Keyword.as_unique_all(Session(), None)  # type: ignore[arg-type]  # the wrong type is the point of the test


def test_one_mapping_as_rows_is_a_type_error() -> None:
    """A single mapping is not the list of them (iterating it would give its keys)."""
    with pytest.raises(TypeError, match=r"not \{'name': 'python'\} \(a dict\)"):
        Keyword.as_unique_all(Session(), {"name": "python"})  # type: ignore[dict-item]  # the wrong type is the point


def test_row_that_is_not_a_mapping_is_a_type_error() -> None:
    """Each item of rows must be a mapping; the error names the item and what it is."""
    with pytest.raises(TypeError, match=r"item 1 of rows is 'sql' \(a str\), not a mapping"):
        Keyword.as_unique_all(Session(), [{"name": "python"}, "sql"])  # type: ignore[list-item]  # the point


def test_unhashable_key_value_is_a_type_error() -> None:
    """A key value must be hashable, as the cache keys on it."""
    with pytest.raises(TypeError, match="must be hashable"):
        Keyword.as_unique(Session(), name=["python"])


def test_sql_expression_value_is_a_type_error(db: Engine) -> None:
    """The INSERT sends bound parameters: a SQL expression is refused, before any SQL."""
    with Session(db) as session, statements(db) as sent, pytest.raises(TypeError, match="'note' is a SQL expression"):
        Keyword.as_unique(session, name="python", note=func.upper("x"))
    assert [] == sent


def test_unknown_name_is_refused_even_when_the_row_exists(db: Engine) -> None:
    """A misspelt name is refused on every call, not only when the object has to be created."""
    with Session(db) as session:
        Keyword.as_unique(session, name="python")
        with pytest.raises(TypeError, match="got 'nmae', which is not an attribute"):
            Keyword.as_unique(session, name="python", nmae="x")


def test_name_the_dataclass_constructor_does_not_take_is_refused(db: Engine) -> None:
    """A MappedAsDataclass constructor takes its own fields: one with init=False is refused."""
    with Session(db) as session, pytest.raises(TypeError, match="got 'id', which the class's constructor does not"):
        Tag.as_unique(session, label="urgent", id=5)


def test_relationship_is_refused_on_a_cache_hit(db: Engine) -> None:
    """A relationship is refused on every call, also when the key is cached."""
    with Session(db) as session:
        Keyword.as_unique(session, name="python")
        with pytest.raises(ArgumentError, match="'category'"):
            Keyword.as_unique(session, name="python", category=Category())


def test_unique_key_given_as_a_string_is_refused() -> None:
    """__unique_key__ = "name" would be read as ("n", "a", "m", "e"): it must be a tuple."""

    class Spelt(UniqueObject, Base):
        __tablename__ = "spelt"
        __unique_key__ = "name"  # type: ignore[assignment]  # the wrong type is the point of the test
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50), unique=True)

    try:
        with pytest.raises(ArgumentError, match=r"must be a tuple of attribute names, such as \('name',\)"):
            Spelt.as_unique(Session(), name="x")
    finally:
        forget(Spelt)


# --- shapes of mapping -------------------------------------------------------------------------------


def test_attribute_named_unlike_its_column(db: Engine) -> None:
    """The key's attribute may have a column name of its own, one at a time and in bulk."""
    with Session(db) as session:
        label = Label.as_unique(session, text="urgent")
        session.commit()
        found = Label.as_unique_all(session, [{"text": "urgent"}, {"text": "later"}])
        assert (label, ["urgent", "later"]) == (found[0], [x.text for x in found])


def test_single_table_inheritance_shares_the_key(db: Engine) -> None:
    """A Dog's row is the Animal of that key."""
    with Session(db) as session:
        dog = Dog.as_unique(session, name="rex")
        assert dog is Animal.as_unique(session, name="rex")


def test_single_table_inheritance_key_of_another_subclass_is_an_error(db: Engine) -> None:
    """Limit: a Cat cannot have the key of a Dog's row; the error says so rather than returning the Dog."""
    with Session(db) as session:
        Dog.as_unique(session, name="rex")
        session.commit()
        with pytest.raises(InvalidRequestError):
            Cat.as_unique(session, name="rex")


def test_loader_criteria_hiding_the_row(db: Engine, backend: Backend) -> None:
    """Limit: criteria added to every SELECT hide a row with the key: an error, except on MariaDB.

    MariaDB's INSERT hands the hidden row back, since loader criteria apply to SELECTs only.
    """
    with Session(db) as session:
        session.add(Keyword(name="hidden", note="deleted"))
        session.commit()
    with Session(db) as session:

        @event.listens_for(session, "do_orm_execute")
        def not_deleted(state: ORMExecuteState) -> None:
            if state.is_select:
                state.statement = state.statement.options(with_loader_criteria(Keyword, Keyword.note.is_(None)))

        try:
            outcome = Keyword.as_unique(session, name="hidden").note
        except InvalidRequestError as refused:
            outcome = "refused" if "could neither find nor insert" in str(refused) else str(refused)
    assert ("deleted" if backend.name == "mariadb" else "refused") == outcome


# --- constructors, keys and refusals ------------------------------------------------------------


def test_dataclass_mapping_gets_its_defaults(db: Engine) -> None:
    """A MappedAsDataclass class is built by its own __init__: default and default_factory apply."""
    with Session(db) as session:
        tag = Tag.as_unique(session, label="urgent")
        assert ("urgent", "grey", "factory") == (tag.label, tag.colour, tag.origin)


def test_validator_changes_the_stored_key(db: Engine) -> None:
    """A @validates method runs on creation; the changed key is found under the new spelling too."""
    with Session(db) as session:
        shouted = Lowered.as_unique(session, name="PYTHON")
        assert ("python", shouted) == (shouted.name, Lowered.as_unique(session, name="python"))


def test_composite_key(db: Engine) -> None:
    """A key of two columns, one at a time and in bulk."""
    with Session(db) as session:
        hello = Word.as_unique(session, language="en", text="hello")
        found = Word.as_unique_all(
            session,
            [
                {"language": "de", "text": "hallo"},
                {"language": "en", "text": "hello"},
                {"language": "de", "text": "hello"},
            ],
        )
        session.commit()
        assert (hello, 3) == (found[1], session.scalar(select(func.count()).select_from(Word)))


def test_composite_key_existing_rows_in_bulk(db: Engine) -> None:
    """Existing rows of a composite key are found with one SELECT."""
    with Session(db) as session:
        session.add_all([Word(language="en", text="a"), Word(language="en", text="b")])
        session.commit()
    with Session(db) as session:
        session.connection()
        with statements(db) as sent:
            Word.as_unique_all(session, [{"language": "en", "text": "a"}, {"language": "en", "text": "b"}])
    assert ["SELECT"] == verbs(sent)


def test_primary_key_as_key(db: Engine) -> None:
    """A natural primary key can be the key."""
    with Session(db) as session:
        code = Code.as_unique(session, code="EUR", label="Euro")
        session.commit()
        assert ("Euro", code) == (code.label, Code.as_unique(session, code="EUR"))


def test_missing_key_value_is_a_type_error(db: Engine) -> None:
    """Every key attribute must be given."""
    with Session(db) as session, pytest.raises(TypeError, match="'text'"):
        Word.as_unique(session, language="en")


def test_none_in_key_is_refused(db: Engine) -> None:
    """None cannot be a key: a unique constraint does not compare NULLs."""
    with Session(db) as session, pytest.raises(ValueError, match="cannot hold None"):
        Keyword.as_unique(session, name=None)


def test_relationship_value_is_refused(db: Engine) -> None:
    """Relationships are not written by the INSERT: giving one is an error, before any SQL."""
    with Session(db) as session:
        category = Category()
        with statements(db) as sent, pytest.raises(ArgumentError, match="'category'"):
            Keyword.as_unique(session, name="python", category=category)
        assert [] == sent


def test_foreign_key_column_is_written(db: Engine) -> None:
    """The foreign key column is the way to link a new object to its parent."""
    with Session(db) as session:
        session.add(Category(id=7))
        session.flush()
        keyword = Keyword.as_unique(session, name="python", category_id=7)
        assert keyword.category is not None
        assert 7 == keyword.category.id


def test_mapper_insert_events_do_not_fire(db: Engine) -> None:
    """The row is written by an INSERT statement, not the unit of work: before_insert stays silent."""
    fired: list[str] = []

    def before_insert(mapper: Any, connection: Any, target: Keyword) -> None:
        fired.append(target.name)

    event.listen(Keyword, "before_insert", before_insert)
    try:
        with Session(db) as session:
            Keyword.as_unique(session, name="python")
            session.add(Keyword(name="by hand"))
            session.commit()
    finally:
        event.remove(Keyword, "before_insert", before_insert)
    assert ["by hand"] == fired


def test_new_object_is_loaded_from_its_row(db: Engine) -> None:
    """The object handed back is loaded from the RETURNING row: the load event fires for it."""
    loaded: list[str] = []

    def on_load(target: Keyword, context: Any) -> None:
        loaded.append(target.name)

    event.listen(Keyword, "load", on_load)
    try:
        with Session(db) as session:
            Keyword.as_unique(session, name="python")
    finally:
        event.remove(Keyword, "load", on_load)
    assert ["python"] == loaded


def test_clash_on_another_unique_key(db: Engine, backend: Backend) -> None:
    """A new row refused by another unique index is an error, never another key's row.

    PostgreSQL and SQLite name the conflict target, so the other index raises IntegrityError;
    MariaDB's ON DUPLICATE KEY matches any unique key, and as_unique() notices the row is not
    the one asked for.
    """
    with Session(db) as session:
        session.add(Word(language="en", text="a", slug="taken"))
        session.commit()
        with pytest.raises(Exception) as raised:
            Word.as_unique(session, language="en", text="b", slug="taken")
    expected = {"sqlite": IntegrityError, "postgresql": IntegrityError, "mariadb": InvalidRequestError}
    assert expected[backend.name] is type(raised.value)


def forget(cls: type[Base]) -> None:
    """Take a class made in a test out of the shared metadata, so the next create_all() leaves its table out."""
    table = cls.__table__
    assert isinstance(table, Table)  # a declarative class's __table__ is typed FromClause
    Base.metadata.remove(table)


def test_table_without_unique_key_is_refused() -> None:
    """A class with no unique constraint besides its primary key says to name the key."""

    class Loose(UniqueObject, Base):
        __tablename__ = "loose"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    try:
        with pytest.raises(ArgumentError, match="__unique_key__"):
            Loose.as_unique(Session(), name="x")
    finally:
        forget(Loose)


def test_two_unique_keys_must_be_named() -> None:
    """With two unique constraints the key is ambiguous until __unique_key__ names it."""

    class Twice(UniqueObject, Base):
        __tablename__ = "twice"
        id: Mapped[int] = mapped_column(primary_key=True)
        a: Mapped[str] = mapped_column(unique=True)
        b: Mapped[str] = mapped_column(unique=True)

    try:
        with pytest.raises(ArgumentError, match="has 2"):
            Twice.as_unique(Session(), a="x", b="y")
    finally:
        forget(Twice)


def test_named_key_must_match_a_constraint() -> None:
    """__unique_key__ must be a unique constraint of the table: ON CONFLICT relies on it."""

    class Unbacked(UniqueObject, Base):
        __tablename__ = "unbacked"
        __unique_key__ = ("name",)
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    try:
        with pytest.raises(ArgumentError, match="matches no unique constraint"):
            Unbacked.as_unique(Session(), name="x")
    finally:
        forget(Unbacked)


def test_case_insensitive_collation_finds_the_row(db: Engine, backend: Backend) -> None:
    """On MariaDB's case-insensitive collation, 'PYTHON' is the row 'python', one at a time and in bulk."""
    if backend.name != "mariadb":
        pytest.skip("only MariaDB compares strings case-insensitively by default")
    with Session(db) as session:
        lower = Keyword.as_unique(session, name="python")
        session.commit()
        one = Keyword.as_unique(session, name="PYTHON")
        many = Keyword.as_unique_all(session, [{"name": "PYTHON"}, {"name": "Python"}, {"name": "sql"}])
        session.commit()
        assert ([lower.id] * 3, ["python", "sql"]) == ([one.id, many[0].id, many[1].id], names_in_database(db))


def test_repeatable_read_clash_is_a_serialization_error(db: Engine, backend: Backend) -> None:
    """On PostgreSQL at REPEATABLE READ, a key committed after our snapshot cannot be used: retry.

    MariaDB runs at REPEATABLE READ by default, and its INSERT hands the other row back instead.
    """
    if backend.name == "sqlite":
        pytest.skip("SQLite has no REPEATABLE READ")
    with Session(db.execution_options(isolation_level="REPEATABLE READ")) as session:
        session.scalars(select(Keyword)).all()  # the snapshot is taken here
        with Session(db) as other:
            Keyword.as_unique(other, name="python")
            other.commit()
        if backend.name == "postgresql":
            with pytest.raises(OperationalError, match="could not serialize access"):
                Keyword.as_unique(session, name="python")
        else:
            assert "python" == Keyword.as_unique(session, name="python").name


# --- the fallbacks ---------------------------------------------------------------------------------


def test_without_returning_a_locking_select_reads_the_rows(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where INSERT has no RETURNING (MySQL), a SELECT reads the rows the INSERT wrote."""
    monkeypatch.setattr(db.dialect, "insert_returning", False)
    with Session(db) as session:
        session.connection()
        with statements(db) as sent:
            found = Keyword.as_unique_all(session, [{"name": "a"}, {"name": "b"}])
        assert (["SELECT", "INSERT", "SELECT"], ["a", "b"]) == (verbs(sent), [k.name for k in found])


def savepoint_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the dialect has no INSERT ... ON CONFLICT: UniqueObject falls back to SAVEPOINTs."""
    monkeypatch.setattr(unique_module._Plan, "insert", lambda self, dialect: None)


def sqlite_savepoints(engine: Engine) -> None:
    """pysqlite's legacy transactions break SAVEPOINT (see FACTS); the documented event pair
    fixes it.  BEGIN IMMEDIATE makes threads queue for the write lock instead of deadlocking."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def test_savepoint_fallback_creates_and_finds(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a conflict clause, a SAVEPOINT around a flush creates the missing rows."""
    savepoint_only(monkeypatch)
    sqlite_savepoints(db)
    with Session(db) as session:
        session.add(Keyword(name="existing"))
        session.commit()
        found = Keyword.as_unique_all(session, [{"name": "existing"}, {"name": "new"}])
        session.commit()
        assert (["existing", "new"], True) == ([k.name for k in found], inspect(found[1]).persistent)
    assert ["existing", "new"] == names_in_database(db)


def test_savepoint_fallback_costs_four_statements(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the conflict clause is the default: a new key through a SAVEPOINT takes four statements."""
    savepoint_only(monkeypatch)
    sqlite_savepoints(db)
    with Session(db) as session:
        session.connection()
        with statements(db) as sent:
            Keyword.as_unique(session, name="python")
    assert ["SELECT", "SAVEPOINT", "INSERT", "RELEASE"] == verbs(sent)


# --- races -----------------------------------------------------------------------------------------

WORKERS, CALLS, KEYS = 6, 12, 4


def slow_inserts(engine: Engine) -> None:
    """Hold every INSERT back a little, so that the other workers' SELECTs miss the row too."""

    @event.listens_for(engine, "before_cursor_execute")
    def _wait(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT"):
            time.sleep(0.005)


def naive(session: Session, name: str) -> Keyword:
    """SELECT, then add if missing: what the 1.x recipe did on a cache miss."""
    keyword = session.scalars(select(Keyword).filter_by(name=name)).first()
    if keyword is None:
        keyword = Keyword(name=name)
        session.add(keyword)
        session.flush()
    return keyword


def race_calls(engine: Engine, barrier: Any, how: str) -> tuple[list[tuple[str, int]], list[str]]:
    """One worker: CALLS transactions, each asking for a key (or all keys) once the others line up."""
    seen: list[tuple[str, int]] = []
    errors: list[str] = []
    for call in range(CALLS):
        key = f"key{call % KEYS}"
        try:
            barrier.wait(timeout=30)
            with Session(engine) as session:
                if how == "as_unique_all":
                    rows = [{"name": f"key{(call + i) % KEYS}"} for i in range(KEYS)]
                    seen.extend((k.name, k.id) for k in Keyword.as_unique_all(session, rows))
                elif how == "naive":
                    seen.append((key, naive(session, key).id))
                else:
                    seen.append((key, Keyword.as_unique(session, name=key).id))
                session.commit()
        except Exception as exc:  # noqa: BLE001  # every error is a failure of the recipe: count it
            errors.append(f"{type(exc).__name__}: {exc}")
    return seen, errors


def race_process(url: str, barrier: Any, results: Any, how: str) -> None:
    """A worker process: its own engine, the same calls."""
    engine = create_engine(url)
    slow_inserts(engine)
    try:
        results.put(race_calls(engine, barrier, how))
    finally:
        engine.dispose()


Outcome = tuple[list[tuple[str, int]], list[str]]


def run_threads(url: URL, how: str, setup: Callable[[Engine], None] | None = None) -> tuple[Outcome, int]:
    """The race between threads, on an engine with a connection ready for each; also the INSERTs sent."""
    engine = create_engine(url, pool_size=WORKERS)
    if setup is not None:
        setup(engine)
    slow_inserts(engine)
    connections = [engine.connect() for _ in range(WORKERS)]
    for connection in connections:
        connection.close()
    barrier = threading.Barrier(WORKERS)
    outcomes: list[Outcome] = []

    def work() -> None:
        outcomes.append(race_calls(engine, barrier, how))

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    try:
        with statements(engine) as sent:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        engine.dispose()
    seen = [s for seen, _ in outcomes for s in seen]
    errors = [e for _, errors in outcomes for e in errors]
    return (seen, errors), verbs(sent).count("INSERT")


def run_processes(url: URL, how: str) -> Outcome:
    # fork is quick (no imports); each child makes its own engine and never touches the parent's.
    context: ForkContext | SpawnContext
    if "fork" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    text = url.render_as_string(hide_password=False)
    processes = [context.Process(target=race_process, args=(text, barrier, results, how)) for _ in range(WORKERS)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join()
    return [s for seen, _ in outcomes for s in seen], [e for _, errors in outcomes for e in errors]


def race_outcome(engine: Engine, seen: list[tuple[str, int]], errors: list[str]) -> tuple[int, int, int, list[str]]:
    """(rows created, most ids seen for one key (1 if all agree), calls answered, errors)."""
    ids_per_key = {name: {i for n, i in seen if n == name} for name, _ in seen}
    with Session(engine) as session:
        rows = session.scalar(select(func.count()).select_from(Keyword)) or 0
    return rows, max(map(len, ids_per_key.values()), default=0), len(seen), errors


def answers(how: str) -> int:
    return WORKERS * CALLS * (KEYS if how == "as_unique_all" else 1)


@pytest.mark.parametrize("how", ["as_unique", "as_unique_all"])
def test_race_between_threads(db: Engine, how: str) -> None:
    """WORKERS threads x CALLS transactions over KEYS shared keys: KEYS rows, no error, and races did happen."""
    (seen, errors), inserts = run_threads(db.url, how)
    # An INSERT that created no row lost a race: one per key (one in all, in bulk) would mean none did.
    raced = inserts > (KEYS if how == "as_unique" else 1)
    assert ((KEYS, 1, answers(how), []), True) == (race_outcome(db, seen, errors), raced), inserts


@pytest.mark.parametrize("how", ["as_unique", "as_unique_all"])
def test_race_between_processes(db: Engine, tables: URL, how: str) -> None:
    """WORKERS processes x CALLS transactions over KEYS shared keys: KEYS rows, no error."""
    seen, errors = run_processes(tables, how)
    assert (KEYS, 1, answers(how), []) == race_outcome(db, seen, errors)


def test_race_with_savepoint_fallback(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SAVEPOINT fallback holds under the same race between threads."""
    savepoint_only(monkeypatch)
    (seen, errors), _ = run_threads(db.url, "as_unique", sqlite_savepoints)
    assert (KEYS, 1, answers("as_unique"), []) == race_outcome(db, seen, errors)


def test_race_catches_the_naive_recipe(db: Engine) -> None:
    """The same race makes SELECT-then-add fail: the race tests above can tell a broken recipe."""
    (_, errors), _ = run_threads(db.url, "naive")
    assert (True, True) == (len(errors) > 0, all(e.startswith("IntegrityError") for e in errors)), errors


# --- with an AsyncSession ------------------------------------------------------------------------------
# The async methods run the code tested above through run_sync(): these tests pin what the
# asyncio side adds (awaiting, the refusals that name the other method, the race between tasks).


def test_async_same_key_gives_same_object(db: Engine, aio: AsyncRun) -> None:
    """Awaited twice for one key in one AsyncSession: one object, and the second call sends nothing."""

    async def body() -> tuple[bool, list[str]]:
        async with AsyncSession(aio.engine) as session:
            first = await Keyword.as_unique_async(session, name="python")
            with statements(aio.engine.sync_engine) as sent:
                again = await Keyword.as_unique_async(session, name="python")
            return first is again, sent

    assert (True, []) == aio.run(body())


def test_async_new_key_costs_a_select_and_an_insert(db: Engine, aio: AsyncRun) -> None:
    """A key the database does not have: one SELECT and one INSERT, as in a Session; the row is committed."""

    async def body() -> tuple[list[str], bool]:
        async with AsyncSession(aio.engine) as session:
            await session.connection()
            with statements(aio.engine.sync_engine) as sent:
                keyword = await Keyword.as_unique_async(session, name="python")
            persistent = inspect(keyword).persistent
            await session.commit()
        return verbs(sent), persistent

    assert ((["SELECT", "INSERT"], True), ["python"]) == (aio.run(body()), names_in_database(db))


def test_async_existing_row_is_found(db: Engine, aio: AsyncRun) -> None:
    """A key whose row exists is read, not inserted again: its object has the row's id."""
    with Session(db) as session:
        session.add(Keyword(name="python", note="stored"))
        session.commit()
        row_id = session.scalars(select(Keyword.id)).one()

    async def body() -> tuple[list[str], int, str | None]:
        async with AsyncSession(aio.engine) as session:
            await session.connection()
            with statements(aio.engine.sync_engine) as sent:
                keyword = await Keyword.as_unique_async(session, name="python", note="ignored")
            return verbs(sent), keyword.id, keyword.note

    assert (["SELECT"], row_id, "stored") == aio.run(body())


def test_async_bulk_returns_objects_in_order(db: Engine, aio: AsyncRun) -> None:
    """as_unique_all_async answers in the order asked, one object per key, with one SELECT and one INSERT."""

    async def body() -> tuple[list[str], bool, list[str]]:
        async with AsyncSession(aio.engine) as session:
            await session.connection()
            with statements(aio.engine.sync_engine) as sent:
                found = await Keyword.as_unique_all_async(session, [{"name": "b"}, {"name": "a"}, {"name": "b"}])
            names = [k.name for k in found]
            await session.commit()
            return names, found[0] is found[2], verbs(sent)

    assert ((["b", "a", "b"], True, ["SELECT", "INSERT"]), ["a", "b"]) == (aio.run(body()), names_in_database(db))


def test_async_commit_empties_the_cache(db: Engine, aio: AsyncRun) -> None:
    """After an awaited commit the key is looked up again, and the object is persistent (not the expired one)."""

    async def body() -> tuple[list[str], bool]:
        async with AsyncSession(aio.engine) as session:
            await Keyword.as_unique_async(session, name="python")
            await session.commit()
            with statements(aio.engine.sync_engine) as sent:
                keyword = await Keyword.as_unique_async(session, name="python")
            return verbs(sent), inspect(keyword).persistent

    assert (["SELECT"], True) == aio.run(body())


def test_async_rollback_makes_created_objects_transient(db: Engine, aio: AsyncRun) -> None:
    """An awaited rollback takes back the rows as_unique_async() inserted: their objects are transient."""

    async def body() -> bool:
        async with AsyncSession(aio.engine) as session:
            keyword = await Keyword.as_unique_async(session, name="python")
            await session.rollback()
            return inspect(keyword).transient

    assert (True, []) == (aio.run(body()), names_in_database(db))


def test_async_errors_are_those_of_the_sync_method(db: Engine, aio: AsyncRun) -> None:
    """What as_unique() refuses, as_unique_async() refuses with the same error, raised where it is awaited."""

    async def body() -> None:
        async with AsyncSession(aio.engine) as session:
            with pytest.raises(ValueError, match="cannot hold None"):
                await Keyword.as_unique_async(session, name=None)
            with pytest.raises(ArgumentError, match="relationship 'category'"):
                await Keyword.as_unique_async(session, name="python", category=Category(id=1))
            with pytest.raises(TypeError, match="iterable of mappings"):
                await Keyword.as_unique_all_async(session, {"name": "python"})  # type: ignore[dict-item]  # the point

    aio.run(body())


@pytest.mark.parametrize("method", ["as_unique", "as_unique_all"])
def test_async_session_given_to_the_sync_method_names_the_async_one(aio: AsyncRun, method: str) -> None:
    """An AsyncSession passed to as_unique() is refused with the name of the method to await instead."""

    async def body() -> None:
        async with AsyncSession(aio.engine) as session:
            with pytest.raises(
                TypeError,
                match=rf"not an AsyncSession: await Keyword\.{method}_async\(session, \.\.\.\) instead$",
            ):
                if method == "as_unique":
                    Keyword.as_unique(session, name="python")  # type: ignore[arg-type]  # the wrong type is the point
                else:
                    Keyword.as_unique_all(session, [{"name": "python"}])  # type: ignore[arg-type]  # the point

    aio.run(body())


def test_async_scoped_session_given_to_the_sync_method_says_what_to_do(aio: AsyncRun) -> None:
    """An async_scoped_session passed to as_unique(): the error says to await the async method on its session."""
    scoped = async_scoped_session(async_sessionmaker(aio.engine), scopefunc=asyncio.current_task)

    async def body() -> None:
        try:
            with pytest.raises(TypeError, match=r"await Keyword\.as_unique_async\(session\(\), \.\.\.\)"):
                Keyword.as_unique(scoped, name="python")  # type: ignore[arg-type]  # the wrong type is the point
        finally:
            await scoped.remove()

    aio.run(body())


def test_session_given_to_the_async_method_names_the_sync_one(db: Engine, aio: AsyncRun) -> None:
    """A Session awaited with as_unique_async() is refused with the method to call instead; so is None."""

    async def body() -> None:
        with Session(db) as session:
            with pytest.raises(
                TypeError, match=r"needs a sqlalchemy.ext.asyncio.AsyncSession .*call Keyword\.as_unique\(session"
            ):
                await Keyword.as_unique_async(session, name="python")  # type: ignore[arg-type]  # the point
            with pytest.raises(TypeError, match=r"call Keyword\.as_unique_all\(session"):
                await Keyword.as_unique_all_async(session, [{"name": "python"}])  # type: ignore[arg-type]  # the point
        with pytest.raises(TypeError, match="AsyncSession as its first argument, not None$"):
            await Keyword.as_unique_async(None, name="python")  # type: ignore[arg-type]  # the point

    aio.run(body())


def test_async_scoped_session_given_to_the_async_method_says_what_to_do(aio: AsyncRun) -> None:
    """An async_scoped_session is not an AsyncSession: the error says how to get one."""
    scoped = async_scoped_session(async_sessionmaker(aio.engine), scopefunc=asyncio.current_task)

    async def body() -> None:
        try:
            with pytest.raises(TypeError, match=r"call the async_scoped_session for its AsyncSession: session\(\)"):
                await Keyword.as_unique_async(scoped, name="python")  # type: ignore[arg-type]  # the point
        finally:
            await scoped.remove()

    aio.run(body())


def test_async_savepoint_fallback_creates_and_finds(db: Engine, aio: AsyncRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a conflict clause, the SAVEPOINT fallback runs under an AsyncSession too (aiosqlite with the fix)."""
    savepoint_only(monkeypatch)

    async def body() -> tuple[list[str], bool]:
        engine = create_async_engine(aio.url)
        sqlite_savepoints(engine.sync_engine)
        try:
            async with AsyncSession(engine) as session:
                session.add(Keyword(name="existing"))
                await session.commit()
                found = await Keyword.as_unique_all_async(session, [{"name": "existing"}, {"name": "new"}])
                names, persistent = [k.name for k in found], inspect(found[1]).persistent
                await session.commit()
                return names, persistent
        finally:
            await engine.dispose()

    assert ((["existing", "new"], True), ["existing", "new"]) == (aio.run(body()), names_in_database(db))


# The race between tasks of one event loop: each task has a session of its own (sharing one
# AsyncSession between tasks is an error of SQLAlchemy's, whatever the recipe does).


def yield_before_inserts(engine: Engine) -> None:
    """Let the other tasks run before every INSERT, so that their SELECTs miss the row too.

    The listener runs in the greenlet that run_sync() started, where await_only() hands an
    awaitable to the event loop (time.sleep() would stop every task).
    """

    @event.listens_for(engine, "before_cursor_execute")
    def _wait(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT"):
            await_only(asyncio.sleep(0.005))


async def race_tasks_calls(engine: AsyncEngine, barrier: asyncio.Barrier, how: str) -> Outcome:
    """One task: CALLS transactions, each asking for a key (or all keys) once the other tasks line up."""
    seen: list[tuple[str, int]] = []
    errors: list[str] = []
    for call in range(CALLS):
        key = f"key{call % KEYS}"
        try:
            async with asyncio.timeout(30):
                await barrier.wait()
            async with AsyncSession(engine) as session:
                if how == "as_unique_all":
                    rows = [{"name": f"key{(call + i) % KEYS}"} for i in range(KEYS)]
                    seen.extend((k.name, k.id) for k in await Keyword.as_unique_all_async(session, rows))
                elif how == "naive":
                    seen.append((key, (await session.run_sync(naive, key)).id))
                else:
                    seen.append((key, (await Keyword.as_unique_async(session, name=key)).id))
                await session.commit()
        except Exception as exc:  # noqa: BLE001  # every error is a failure of the recipe: count it
            errors.append(f"{type(exc).__name__}: {exc}")
    return seen, errors


async def run_tasks(url: URL, how: str, setup: Callable[[Engine], None] | None = None) -> tuple[Outcome, int]:
    """The race between WORKERS tasks under asyncio.gather(), each with its own AsyncSession; also the INSERTs sent."""
    engine = create_async_engine(url, pool_size=WORKERS)
    if setup is not None:
        setup(engine.sync_engine)
    yield_before_inserts(engine.sync_engine)
    try:
        connections = [await engine.connect() for _ in range(WORKERS)]
        for connection in connections:
            await connection.close()
        barrier = asyncio.Barrier(WORKERS)
        with statements(engine.sync_engine) as sent:
            outcomes = await asyncio.gather(*(race_tasks_calls(engine, barrier, how) for _ in range(WORKERS)))
    finally:
        await engine.dispose()
    seen = [s for seen, _ in outcomes for s in seen]
    errors = [e for _, errors in outcomes for e in errors]
    return (seen, errors), verbs(sent).count("INSERT")


@pytest.mark.parametrize("how", ["as_unique", "as_unique_all"])
def test_async_race_between_tasks(db: Engine, aio: AsyncRun, how: str) -> None:
    """WORKERS tasks under asyncio.gather() x CALLS transactions over KEYS shared keys: KEYS rows, no error,
    and races did happen."""
    (seen, errors), inserts = aio.run(run_tasks(aio.url, how))
    raced = inserts > (KEYS if how == "as_unique" else 1)
    assert ((KEYS, 1, answers(how), []), True) == (race_outcome(db, seen, errors), raced), inserts


def test_async_race_with_savepoint_fallback(db: Engine, aio: AsyncRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SAVEPOINT fallback holds under the same race between tasks."""
    savepoint_only(monkeypatch)
    (seen, errors), _ = aio.run(run_tasks(aio.url, "as_unique", sqlite_savepoints))
    assert (KEYS, 1, answers("as_unique"), []) == race_outcome(db, seen, errors)


def test_async_race_catches_the_naive_recipe(db: Engine, aio: AsyncRun) -> None:
    """The same race makes SELECT-then-add fail between tasks too: the race test above can tell a broken recipe."""
    (_, errors), _ = aio.run(run_tasks(aio.url, "naive"))

    # Two INSERTs of one key collide: a duplicate key; or on MariaDB, when both already hold gap
    # locks on the unique index, InnoDB's deadlock (1213) for one of them; or on SQLite, when both
    # read before either writes, "database is locked" at once for the second to ask for the write
    # lock (SQLite does not wait where waiting would deadlock). The naive recipe fails each way.
    def collided(error: str) -> bool:
        return error.startswith("IntegrityError") or "(1213, 'Deadlock found" in error or "database is locked" in error

    assert (True, []) == (len(errors) > 0, [e for e in errors if not collided(e)])
