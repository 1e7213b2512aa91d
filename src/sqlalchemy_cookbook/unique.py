"""One object per unique key: :class:`UniqueObject`.

A mapped class that mixes in :class:`UniqueObject` gets two class methods that ask for objects
by their unique key instead of constructing them:

* :meth:`UniqueObject.as_unique` returns the one object for one key;
* :meth:`UniqueObject.as_unique_all` resolves many keys at once.

With an :class:`~sqlalchemy.ext.asyncio.AsyncSession`, await :meth:`UniqueObject.as_unique_async`
and :meth:`UniqueObject.as_unique_all_async` instead: they run the same code through
:meth:`AsyncSession.run_sync() <sqlalchemy.ext.asyncio.AsyncSession.run_sync>`, so everything
below holds for them too.

Each key is looked for in three places, cheapest first:

1. a cache kept in the session (no SQL at all);
2. the database (one SELECT for all the keys asked for);
3. if it is still missing, the class's own constructor makes the object, and one INSERT whose
   conflict clause ignores rows that already exist writes the row and returns it
   (``INSERT ... ON CONFLICT DO NOTHING RETURNING`` on PostgreSQL and SQLite,
   ``INSERT ... ON DUPLICATE KEY UPDATE ... RETURNING`` on MariaDB).

When another session or process inserted the same key a moment before, the INSERT writes
nothing instead of failing, and a locking SELECT reads the other session's row: two sessions
racing for one key get one row between them and no :class:`~sqlalchemy.exc.IntegrityError`.
Databases that have no such INSERT fall back to a SAVEPOINT around a flush, retried after an
:class:`~sqlalchemy.exc.IntegrityError`; those whose INSERT has no RETURNING (MySQL) read the
rows back with the locking SELECT.

The cache never hands out an object the database would not give for that key in this
transaction, as far as the session can know:

* it is emptied whenever the session's transaction ends (commit, rollback or close), when a
  SAVEPOINT is rolled back, and when any statement other than a SELECT or an INSERT runs through
  the session (an ``UPDATE`` or ``DELETE``, whatever its ``synchronize_session``, or textual SQL);
* an object is taken from it only while it is persistent in that session, unexpired, not marked
  for deletion, and its key attributes still hold the values they had when it was cached
  (``keyword.name = "renamed"`` takes it out of the cache for its old key, flushed or not).

An object whose row :meth:`UniqueObject.as_unique` inserted has no row any more once the
transaction or SAVEPOINT it was inserted in is rolled back: like an object the flush inserted
there, it becomes transient (see :func:`~sqlalchemy.orm.make_transient`).
"""

from __future__ import annotations

import reprlib
import sys
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from inspect import Parameter, signature
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from sqlalchemy import event, inspect, select, tuple_
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError, IntegrityError, InvalidRequestError
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, SessionTransaction, make_transient, scoped_session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.schema import Column, Index, Table, UniqueConstraint
from sqlalchemy.sql import ClauseElement, and_
from sqlalchemy.sql.dml import Insert

if TYPE_CHECKING:
    # Imported where the async methods run, not here: the synchronous API needs no greenlet.
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["UniqueObject"]

Key = tuple[Hashable, ...]
_T = TypeVar("_T")

# Where the per-session cache, and the objects whose rows this module inserted, live in Session.info.
_CACHE = "sqlalchemy_cookbook.unique"
_CREATED = "sqlalchemy_cookbook.unique.created"
_RESTORED = "sqlalchemy_cookbook.unique.restored"
# How many rounds of INSERT and locking SELECT may resolve no key before giving up (a row
# another transaction deleted in between, or a clash on another unique key).
_ROUNDS = 3


class UniqueObject:
    """A mixin for mapped classes: one object per unique key, in every session, under races.

    Mix it into a mapped class whose table has a unique constraint, and ask for objects with
    :meth:`as_unique` instead of calling the class:

    .. code-block:: python

        from sqlalchemy import String, create_engine, select
        from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

        from sqlalchemy_cookbook import UniqueObject


        class Base(DeclarativeBase):
            pass


        class Keyword(UniqueObject, Base):
            __tablename__ = "keyword"

            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str] = mapped_column(String(50), unique=True)


        engine = create_engine("sqlite://")
        Base.metadata.create_all(engine)

    The key is the table's only unique constraint or unique index besides the primary key.
    When the table has several, or the key is the primary key, name the attributes that form it
    in ``__unique_key__``, e.g. ``__unique_key__ = ("language", "name")``; they must match a
    unique constraint, unique index or the primary key of the table exactly, because the
    database's conflict clause relies on it.

    A new object is made by the class's own constructor, with keyword arguments, as the 2.x
    declarative constructor and :class:`~sqlalchemy.orm.MappedAsDataclass` mappings expect;
    what the constructor sets on column attributes (defaults, ``default_factory`` values,
    values a :func:`~sqlalchemy.orm.validates` method changed) goes into the INSERT:

    .. code-block:: python

        from sqlalchemy.orm import MappedAsDataclass


        class DataclassBase(MappedAsDataclass, DeclarativeBase):
            pass


        class Tag(UniqueObject, DataclassBase):
            __tablename__ = "tag"

            id: Mapped[int] = mapped_column(primary_key=True, init=False)
            label: Mapped[str] = mapped_column(String(50), unique=True)
            colour: Mapped[str] = mapped_column(String(20), default="grey")


        DataclassBase.metadata.create_all(engine)

    >>> with Session(engine) as session:
    ...     Tag.as_unique(session, label="urgent")
    Tag(id=1, label='urgent', colour='grey')

    The object you get back is loaded from the row, like any query result, so ``__init__``
    does not run on it: use :func:`~sqlalchemy.orm.reconstructor` for state that is not a column.

    A key that a :func:`~sqlalchemy.orm.validates` method changes (lower-cases, say) is found
    under the spelling you asked for and under the stored one; when the row exists but not this
    session's cache entry for it, asking with another spelling than the stored one costs an
    INSERT that writes nothing and a second SELECT, since only the constructor knows the
    stored spelling.

    Limits:

    * Only column attributes can be given; relationships are refused
      (set the foreign key column instead), and so are SQL expressions as values, since the
      INSERT sends bound parameters.
    * The class must be mapped to one table (no joined-table inheritance).
      With single-table inheritance a key is unique across the table: asking one subclass for
      a key that a row of another subclass holds is an error.
    * The cache compares key values in Python: on a case-insensitive collation, ``"PY"`` and
      ``"py"`` are two cache entries for one row (the database still finds the row, at the
      cost of a SELECT each); normalise keys, for instance lower-case them, to avoid that.
    * The cache trusts the session, as the ORM's identity map does: a row another transaction
      changes or deletes, or one a statement run on the session's
      :class:`~sqlalchemy.engine.Connection` changes, is not noticed before the transaction
      ends. With ``synchronize_session=False``, an ``UPDATE`` run through the session leaves
      objects in the session with their old values, as it does without this class.
    * With autoflush off (``Session(autoflush=False)``, or inside
      :attr:`~sqlalchemy.orm.Session.no_autoflush`), the database does not know what the session
      has not flushed: a key held in memory only, by a pending object or by one whose key was
      changed, is refused with :class:`~sqlalchemy.exc.InvalidRequestError` rather than
      answered from the rows; flush first.
    * The row is written by an INSERT statement, not by the unit of work, so the mapper
      events :meth:`~sqlalchemy.orm.MapperEvents.before_insert` and
      :meth:`~sqlalchemy.orm.MapperEvents.after_insert` do not run for it
      (except with the savepoint fallback).
    * After a rollback, the objects whose rows :meth:`as_unique` inserted in the rolled-back
      transaction or SAVEPOINT are transient. MariaDB's INSERT (and MySQL's, read back by a
      SELECT) also hands back a row that another transaction committed between this one's
      SELECT and its INSERT, and such an object is made transient too, though its row exists:
      after a rollback, ask :meth:`as_unique` again rather than keeping objects from before.
      SAVEPOINTs begun on the session's :class:`~sqlalchemy.engine.Connection` rather than with
      :meth:`Session.begin_nested() <sqlalchemy.orm.Session.begin_nested>` are not seen.
    """

    __unique_key__: ClassVar[tuple[str, ...]]

    @classmethod
    def as_unique(cls, session: Session, /, **values: Any) -> Self:
        """The one object of this class whose unique key has these values.

        ``values`` must include every attribute of the key; the others are used only when
        the object has to be created, and passed to the class's constructor, but they are
        checked on every call: a name the constructor would refuse is refused even when the row
        exists.
        Costs no SQL when this session got the object from :meth:`as_unique` or
        :meth:`as_unique_all` earlier in the same transaction (the cache), one SELECT when
        the row exists, and a SELECT plus an INSERT when it does not (one more SELECT when
        another transaction inserted the same key in between).

        >>> with Session(engine) as session:
        ...     python = Keyword.as_unique(session, name="python")
        ...     python is Keyword.as_unique(session, name="python")
        ...     session.commit()
        True
        >>> with Session(engine) as session:
        ...     session.execute(select(Keyword.id, Keyword.name)).all()
        [(1, 'python')]

        The session's autoflush setting applies to the SELECT as to any query.

        :param session: the session the object belongs to; its cache lives in
            :attr:`Session.info <sqlalchemy.orm.Session.info>`.
        :type session: ~sqlalchemy.orm.Session
        :param values: the key's values, and values for a new object's other columns.
        :type values: ~typing.Any
        :returns: the persistent object for the key.
        :raises TypeError: ``session`` is not a :class:`~sqlalchemy.orm.Session`; the class is
            not mapped; a key attribute is missing from ``values`` or its value is not hashable;
            a value is a SQL expression; a name in ``values`` is not one the class's
            constructor takes (with the declarative constructor: not an attribute of the class);
            or, when the object has to be created, the constructor refuses the values.
        :raises ValueError: a key value is ``None`` (a unique constraint does not compare NULLs).
        :raises sqlalchemy.exc.ArgumentError: the class has no usable unique key, or a
            relationship was given.
        :raises sqlalchemy.exc.IntegrityError: a new row clashes with another unique constraint
            of the table (PostgreSQL, SQLite).
        :raises sqlalchemy.exc.InvalidRequestError: the same clash on MariaDB, whose conflict
            clause covers every unique key; a row with the key exists that the SELECT does not
            return (loader criteria, another subclass's row); or, with autoflush off, the key's
            object is marked for deletion, or the key is held in memory only (see the limits).
        """
        return _resolve(session, cls, (values,), "as_unique")[0]

    @classmethod
    def as_unique_all(cls, session: Session, rows: Iterable[Mapping[str, Any]], /) -> list[Self]:
        """The objects for many keys at once, in the order asked for.

        Each item of ``rows`` holds the values :meth:`as_unique` would take as keyword
        arguments.
        Whatever the number of keys, this costs at most one SELECT for those not in the
        session's cache and one INSERT for those the database does not have (plus one SELECT
        for any that another transaction inserted in between), until the database's limit of
        parameters per statement splits them.
        The same key asked for twice gives the same object twice.

        >>> with Session(engine) as session:
        ...     keywords = Keyword.as_unique_all(
        ...         session, [{"name": "sql"}, {"name": "python"}, {"name": "sql"}]
        ...     )
        ...     [keyword.name for keyword in keywords]
        ...     keywords[0] is keywords[2]
        ...     session.scalars(select(Keyword.name).order_by(Keyword.name)).all()
        ['sql', 'python', 'sql']
        True
        ['python', 'sql']

        It raises the same errors as :meth:`as_unique`, and a :class:`TypeError` when ``rows``
        is not an iterable of mappings (a single mapping, a string, ``None``), before any SQL.

        :param session: the session the objects belong to.
        :type session: ~sqlalchemy.orm.Session
        :param rows: one mapping of values per object, as :meth:`as_unique` takes them.
        :type rows: ~collections.abc.Iterable[~collections.abc.Mapping[str, ~typing.Any]]
        :returns: the persistent objects, one per item of ``rows``.
        """
        return _resolve(session, cls, _listed(cls, rows), "as_unique_all")

    @classmethod
    async def as_unique_async(cls, session: AsyncSession, /, **values: Any) -> Self:
        """The one object for these values, as :meth:`as_unique` finds it, for an AsyncSession.

        ``await Keyword.as_unique_async(session, name="python")`` runs :meth:`as_unique`'s own
        code inside :meth:`AsyncSession.run_sync() <sqlalchemy.ext.asyncio.AsyncSession.run_sync>`:
        the same cache (kept in the session's :attr:`~sqlalchemy.ext.asyncio.AsyncSession.info`),
        the same statements, and the same safety when sessions race for a key, whether they run
        in threads, processes, or tasks of one event loop under :func:`asyncio.gather`
        (give each task a session of its own, as SQLAlchemy requires).
        :ref:`reference-unique-object-async` shows it run.

        :param session: the session the object belongs to.
        :type session: ~sqlalchemy.ext.asyncio.AsyncSession
        :param values: as for :meth:`as_unique`.
        :type values: ~typing.Any
        :returns: the persistent object for the key.
        :raises TypeError: ``session`` is not an :class:`~sqlalchemy.ext.asyncio.AsyncSession`
            (with a :class:`~sqlalchemy.orm.Session`, call :meth:`as_unique`); otherwise what
            :meth:`as_unique` raises.
        """
        found = await _resolve_async(session, cls, (values,), "as_unique_async")
        return found[0]

    @classmethod
    async def as_unique_all_async(cls, session: AsyncSession, rows: Iterable[Mapping[str, Any]], /) -> list[Self]:
        """The objects for many keys at once, as :meth:`as_unique_all` finds them, for an AsyncSession.

        ``await Keyword.as_unique_all_async(session, [{"name": "sql"}, {"name": "orm"}])`` runs
        :meth:`as_unique_all`'s own code inside
        :meth:`AsyncSession.run_sync() <sqlalchemy.ext.asyncio.AsyncSession.run_sync>`, with the
        same statements and the same answers.

        :param session: the session the objects belong to.
        :type session: ~sqlalchemy.ext.asyncio.AsyncSession
        :param rows: one mapping of values per object, as :meth:`as_unique_all` takes them.
        :type rows: ~collections.abc.Iterable[~collections.abc.Mapping[str, ~typing.Any]]
        :returns: the persistent objects, one per item of ``rows``.
        :raises TypeError: ``session`` is not an :class:`~sqlalchemy.ext.asyncio.AsyncSession`
            (with a :class:`~sqlalchemy.orm.Session`, call :meth:`as_unique_all`); otherwise what
            :meth:`as_unique_all` raises.
        """
        return await _resolve_async(session, cls, _listed(cls, rows), "as_unique_all_async")


# --- checking what was given ------------------------------------------------------------------


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{reprlib.repr(value)} ({'an' if name[0] in 'AEIOUaeiou' else 'a'} {name})"


def _check_session(cls: type[Any], session: Any, method: str) -> None:
    if isinstance(session, Session):
        return
    # Loaded already if the caller has an AsyncSession; importing it here would need greenlet.
    asyncio = sys.modules.get("sqlalchemy.ext.asyncio")
    if asyncio is not None and isinstance(session, asyncio.AsyncSession | asyncio.async_scoped_session):
        scoped = isinstance(session, asyncio.async_scoped_session)
        raise TypeError(
            f"{cls.__name__}.{method}() needs a sqlalchemy.orm.Session as its first argument, not "
            f"{'an async_scoped_session' if scoped else 'an AsyncSession'}: await "
            f"{cls.__name__}.{method}_async({'session()' if scoped else 'session'}, ...) instead"
        )
    hint = ""
    if isinstance(session, scoped_session):
        hint = "; call the scoped_session for its Session: session()"
    raise TypeError(
        f"{cls.__name__}.{method}() needs a sqlalchemy.orm.Session as its first argument, "
        f"not {_describe(session)}{hint}"
    )


async def _resolve_async(session: Any, cls: type[_T], rows: Sequence[Mapping[str, Any]], method: str) -> list[_T]:
    """:func:`_resolve` for an AsyncSession: the same code, run where it may do IO."""
    from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session

    if not isinstance(session, AsyncSession):
        needs = f"{cls.__name__}.{method}() needs a sqlalchemy.ext.asyncio.AsyncSession as its first argument"
        if isinstance(session, Session | scoped_session):
            sync_method = method.removesuffix("_async")
            call = "session()" if isinstance(session, scoped_session) else "session"
            raise TypeError(
                f"{needs}, not a {type(session).__name__}: call {cls.__name__}.{sync_method}({call}, ...) instead"
            )
        hint = ""
        if isinstance(session, async_scoped_session):
            hint = "; call the async_scoped_session for its AsyncSession: session()"
        raise TypeError(f"{needs}, not {_describe(session)}{hint}")
    return await session.run_sync(_resolve, cls, rows, method)


def _listed(cls: type[Any], rows: Any) -> list[Mapping[str, Any]]:
    if isinstance(rows, Mapping | str | bytes) or not isinstance(rows, Iterable):
        raise TypeError(
            f"{cls.__name__}.as_unique_all() takes an iterable of mappings, one per object "
            f"(e.g. [{{'name': 'python'}}]), not {_describe(rows)}"
        )
    listed = list(rows)
    for index, row in enumerate(listed):
        if not isinstance(row, Mapping):
            raise TypeError(
                f"{cls.__name__}.as_unique_all(): item {index} of rows is {_describe(row)}, "
                f"not a mapping of attribute names to values"
            )
    return listed


# Types of values seen not to be SQL expressions: checking a type once keeps each call cheap.
_PLAIN_TYPES: set[type[Any]] = {type(None), str, int, float, bool, bytes}


def _check_plain(cls: type[Any], method: str, name: str, value: Any) -> None:
    if isinstance(value, ClauseElement) or hasattr(type(value), "__clause_element__"):
        raise TypeError(
            f"{cls.__name__}.{method}() sends values as bound parameters; {name!r} is "
            f"a SQL expression ({_describe(value)}): give a plain value, or use a server default"
        )
    _PLAIN_TYPES.add(type(value))


# --- what one class needs ----------------------------------------------------------------------


@dataclass(eq=False)
class _Plan:
    """What :class:`UniqueObject` needs to know about one mapped class, worked out once."""

    cls: type[Any]
    mapper: Mapper[Any]
    table: Table
    key_attrs: tuple[str, ...]
    key_columns: tuple[Column[Any], ...]
    column_attrs: frozenset[str]
    relationships: frozenset[str]
    # The names the constructor takes: None for any, "attributes" for the declarative
    # constructor's rule (any attribute of the class).
    takes: frozenset[str] | str | None
    accepted: set[str] = field(default_factory=set)
    inserts: dict[str, Insert | None] = field(default_factory=dict)

    def check(self, row: Mapping[str, Any], method: str) -> None:
        """Refuse, before any SQL, what the constructor or the INSERT would refuse."""
        for name, value in row.items():
            if name not in self.accepted:
                self._accept(name, value, method)
            if type(value) not in _PLAIN_TYPES:
                _check_plain(self.cls, method, name, value)

    def _accept(self, name: Any, value: Any, method: str) -> None:
        if name in self.relationships:
            if value:
                raise ArgumentError(
                    f"{self.cls.__name__}.{method}() writes columns only; got the relationship "
                    f"{name!r}: give its foreign key column instead"
                )
            return  # None is harmless, but the next value may not be: not remembered as accepted
        if not isinstance(name, str):
            raise TypeError(f"{self.cls.__name__}.{method}(): attribute names are strings, not {_describe(name)}")
        if self.takes == "attributes":
            if not hasattr(self.cls, name):
                raise TypeError(f"{self.cls.__name__}.{method}() got {name!r}, which is not an attribute of the class")
        elif self.takes is not None and name not in self.takes:
            raise TypeError(
                f"{self.cls.__name__}.{method}() got {name!r}, which the class's constructor does not "
                f"take; it takes {sorted(self.takes)}"
            )
        self.accepted.add(name)

    def key_of(self, values: Mapping[str, Any]) -> Key:
        try:
            if len(self.key_attrs) == 1:
                key: Key = (values[self.key_attrs[0]],)
            else:
                key = tuple(values[name] for name in self.key_attrs)
        except KeyError as missing:
            raise TypeError(
                f"{self.cls.__name__}.as_unique() needs a value for {missing.args[0]!r}, "
                f"part of its unique key {self.key_attrs}"
            ) from None
        if key[0] is None if len(key) == 1 else any(value is None for value in key):
            raise ValueError(
                f"{self.cls.__name__}: a unique key cannot hold None "
                f"(the database does not compare NULLs): {dict(zip(self.key_attrs, key, strict=True))}"
            )
        try:
            hash(key)
        except TypeError:
            raise TypeError(
                f"{self.cls.__name__}: the values of a unique key must be hashable, as column values "
                f"are; got {dict(zip(self.key_attrs, key, strict=True))!r}"
            ) from None
        return key

    def key_of_object(self, obj: Any) -> Key:
        return tuple(getattr(obj, name) for name in self.key_attrs)

    def key_in(self, dict_: Mapping[str, Any]) -> Key:
        """The key an object holds in memory (no loading: an attribute not loaded reads as None)."""
        if len(self.key_attrs) == 1:
            return (dict_.get(self.key_attrs[0]),)
        return tuple(dict_.get(name) for name in self.key_attrs)

    def where(self, keys: Sequence[Key]) -> Any:
        """The WHERE clause that finds the rows of these keys."""
        if len(self.key_columns) == 1:
            column = self.key_columns[0]
            if len(keys) == 1:
                return column == keys[0][0]
            return column.in_([key[0] for key in keys])
        if len(keys) == 1:
            return and_(*(column == value for column, value in zip(self.key_columns, keys[0], strict=True)))
        return tuple_(*self.key_columns).in_(keys)

    def insert(self, dialect: Dialect) -> Insert | None:
        """The dialect's INSERT that skips rows whose key exists, or None if it has none."""
        if dialect.name not in self.inserts:
            self.inserts[dialect.name] = _conflict_free_insert(self, dialect.name)
        return self.inserts[dialect.name]


# Each class keeps its own plan (a subclass never sees its parent's).
_PLAN = "_sqlalchemy_cookbook_unique_plan"


def _plan(cls: type[Any]) -> _Plan:
    plan: _Plan | None = cls.__dict__.get(_PLAN)
    if plan is None:
        plan = _make_plan(cls)
        type.__setattr__(cls, _PLAN, plan)
    return plan


def _make_plan(cls: type[Any]) -> _Plan:
    mapper = inspect(cls, raiseerr=False)
    if not isinstance(mapper, Mapper):
        raise TypeError(
            f"{cls.__name__} is not mapped: UniqueObject's methods need a mapped class "
            f"(mix UniqueObject into a declarative class that has a table)"
        )
    table = mapper.local_table
    if len(mapper.tables) != 1 or not isinstance(table, Table):
        raise ArgumentError(f"{cls.__name__}: UniqueObject needs a class mapped to a single table")
    columns: set[Any] = set(table.columns)
    column_attrs = frozenset(prop.key for prop in mapper.column_attrs if all(c in columns for c in prop.columns))
    relationships = frozenset(prop.key for prop in mapper.relationships)
    candidates = _unique_column_sets(table)
    declared: Any = getattr(cls, "__unique_key__", None)
    if declared is None:
        primary = frozenset(table.primary_key.columns)
        found = [c for c in candidates if frozenset(c) != primary]
        if len(found) != 1:
            reason = "has none" if not found else f"has {len(found)}"
            raise ArgumentError(
                f"{cls.__name__}: the unique key is the table's only unique constraint or "
                f"unique index besides the primary key, and {table.name!r} {reason}; "
                f"name the key's attributes in __unique_key__"
            )
        key_columns = tuple(found[0])
        key_attrs = tuple(mapper.get_property_by_column(c).key for c in key_columns)
    else:
        if isinstance(declared, str) or not isinstance(declared, Iterable):
            raise ArgumentError(
                f"{cls.__name__}.__unique_key__ must be a tuple of attribute names, such as "
                f"('name',), not {_describe(declared)}"
            )
        key_attrs = tuple(declared)
        unknown = [name for name in key_attrs if name not in column_attrs]
        if not key_attrs or unknown:
            raise ArgumentError(
                f"{cls.__name__}.__unique_key__ must name column attributes of "
                f"{table.name!r}; not: {unknown or '(empty)'}"
            )
        key_columns = tuple(table.columns[mapper.column_attrs[name].columns[0].key] for name in key_attrs)
        if frozenset(key_columns) not in {frozenset(c) for c in candidates}:
            raise ArgumentError(
                f"{cls.__name__}.__unique_key__ {key_attrs} matches no unique constraint, "
                f"unique index or primary key of {table.name!r}"
            )
    return _Plan(
        cls=cls,
        mapper=mapper,
        table=table,
        key_attrs=key_attrs,
        key_columns=key_columns,
        column_attrs=column_attrs,
        relationships=relationships,
        takes=_constructor_takes(mapper),
    )


def _constructor_takes(mapper: Mapper[Any]) -> frozenset[str] | str | None:
    """The keyword arguments the class's constructor takes (see :attr:`_Plan.takes`)."""
    init = mapper.class_manager.original_init
    if init is mapper.registry.constructor:
        return "attributes"
    if init is None:
        return None
    try:
        parameters = list(signature(init).parameters.values())[1:]
    except (TypeError, ValueError):  # no signature to read (a builtin): let the constructor decide
        return None
    if any(p.kind is Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind in (Parameter.POSITIONAL_OR_KEYWORD, Parameter.KEYWORD_ONLY))


def _unique_column_sets(table: Table) -> list[tuple[Column[Any], ...]]:
    """The column sets of the table's primary key, unique constraints and unique indexes."""
    sets: list[tuple[Column[Any], ...]] = [tuple(table.primary_key.columns)]
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            sets.append(tuple(constraint.columns))
    for index in table.indexes:
        if isinstance(index, Index) and index.unique and all(isinstance(e, Column) for e in index.expressions):
            sets.append(tuple(index.columns))
    unique: dict[frozenset[Column[Any]], tuple[Column[Any], ...]] = {}
    for columns in sets:
        if columns:
            unique.setdefault(frozenset(columns), columns)
    return list(unique.values())


def _conflict_free_insert(plan: _Plan, dialect_name: str) -> Insert | None:
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(plan.cls).on_conflict_do_nothing(index_elements=list(plan.key_columns))
    if dialect_name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(plan.cls).on_conflict_do_nothing(index_elements=list(plan.key_columns))
    if dialect_name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        # "key = key" changes nothing: the row that is already there stays as it is,
        # and RETURNING (MariaDB) hands it back.
        first = plan.key_columns[0]
        return mysql_insert(plan.cls).on_duplicate_key_update({first.name: first})
    return None


# --- the per-session cache, and what a rollback takes back --------------------------------------

# (class, key asked for) -> (object, the key it held when cached)
_Cache = dict[tuple[type[Any], Key], tuple[Any, Key]]


def _cache(session: Session) -> _Cache:
    cache: _Cache | None = session.info.get(_CACHE)
    if cache is None:
        cache = session.info[_CACHE] = {}
        if not event.contains(session, "after_transaction_end", _transaction_ended):
            event.listen(session, "after_transaction_end", _transaction_ended)
            event.listen(session, "after_soft_rollback", _rolled_back)
            event.listen(session, "after_rollback", _rows_rolled_back)
            event.listen(session, "do_orm_execute", _statement_run)
    return cache


def _forget(session: Session) -> None:
    cache = session.info.get(_CACHE)
    if cache:
        cache.clear()


def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended (commit, rollback or close): every row may change now."""
    if transaction.parent is None:
        _forget(session)
        session.info.pop(_CREATED, None)


def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """Any rollback, a SAVEPOINT's too, may have taken rows the cache points to."""
    _forget(session)
    _restored(session)


def _statement_run(orm_execute_state: ORMExecuteState) -> None:
    """An UPDATE, a DELETE or textual SQL may have changed or removed rows the cache points to."""
    if not (orm_execute_state.is_select or orm_execute_state.is_insert):
        _forget(orm_execute_state.session)


def _current_transaction(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def _remember_created(session: Session, objects: Iterable[Any]) -> None:
    """Note the objects whose rows this transaction (or SAVEPOINT) inserted."""
    transaction = _current_transaction(session)
    created: list[tuple[SessionTransaction | None, weakref.ref[Any]]] = session.info.setdefault(_CREATED, [])
    created.extend((transaction, weakref.ref(obj)) for obj in objects)


def _rows_rolled_back(session: Session) -> None:
    """The transaction or SAVEPOINT being rolled back takes back the rows inserted in it.

    SQLAlchemy makes the objects its flush inserted there transient again; the rows inserted
    here were loaded, not flushed, so this does the same for them, before SQLAlchemy expires
    what is left (``after_rollback`` runs while the rolled-back transaction is still current).
    An object whose deletion was flushed meanwhile is made persistent again by SQLAlchemy
    after this runs: it is made transient once that is done (:func:`_restored`).
    """
    created = session.info.get(_CREATED)
    if not created:
        return
    rolled_back = _current_transaction(session)
    kept = []
    for transaction, ref in created:
        if not _within(transaction, rolled_back):
            kept.append((transaction, ref))
            continue
        obj = ref()
        if obj is None:
            continue
        state = instance_state(obj)
        if state.session is not session:
            continue
        if state.persistent:
            make_transient(obj)
        elif state.deleted:
            session.info.setdefault(_RESTORED, []).append(obj)
    created[:] = kept


def _restored(session: Session) -> None:
    for obj in session.info.pop(_RESTORED, ()):
        if instance_state(obj).persistent:
            make_transient(obj)


def _within(transaction: SessionTransaction | None, outer: SessionTransaction | None) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


def _cached(session: Session, cache: _Cache, plan: _Plan, key: Key) -> Any:
    """The cached object for the key, if it may be handed out without asking the database."""
    entry = cache.get((plan.cls, key))
    if entry is None:
        return None
    obj, held = entry
    state = instance_state(obj)
    if (
        state.session is session
        and state.persistent
        and not state.expired_attributes
        and plan.key_in(state.dict) == held
        and obj not in session.deleted
    ):
        return obj
    return None


# --- resolving keys -----------------------------------------------------------------------


def _resolve(session: Session, cls: type[_T], rows: Sequence[Mapping[str, Any]], method: str) -> list[_T]:
    _check_session(cls, session, method)
    plan = _plan(cls)
    keys = []
    for row in rows:
        plan.check(row, method)
        keys.append(plan.key_of(row))
    cache = _cache(session)
    if len(keys) == 1:
        cached = _cached(session, cache, plan, keys[0])
        if cached is not None:
            return [cached]
    found: dict[Key, Any] = {}
    wanted: dict[Key, Mapping[str, Any]] = {}
    for key, row in zip(keys, rows, strict=True):
        if key in found or key in wanted:
            continue
        cached = _cached(session, cache, plan, key)
        if cached is not None:
            found[key] = cached
        else:
            wanted[key] = row
    if wanted:
        resolved = _from_database(session, plan, wanted)
        for key, obj in resolved.items():
            held = plan.key_in(instance_state(obj).dict)
            cache[(cls, key)] = (obj, held)
            # The spelling stored (a validator may have changed it) finds the object too.
            cache[(cls, held)] = (obj, held)
        found.update(resolved)
    return [found[key] for key in keys]


def _from_database(session: Session, plan: _Plan, wanted: Mapping[Key, Mapping[str, Any]]) -> dict[Key, Any]:
    keys = list(wanted)
    if not session.autoflush:
        _refuse_unflushed(session, plan, keys)
    resolved: dict[Key, Any] = {}
    for chunk in _chunks(keys, plan):
        resolved.update(_select(session, plan, chunk, lock=False))
    missing = [key for key in keys if key not in resolved]
    if missing:
        resolved.update(_create(session, plan, {key: wanted[key] for key in missing}))
    for obj in resolved.values():
        if obj in session.deleted:
            raise InvalidRequestError(
                f"{obj!r} is marked for deletion in this session; flush it before asking "
                f"{plan.cls.__name__}.as_unique() for its key again"
            )
    return resolved


def _refuse_unflushed(session: Session, plan: _Plan, keys: Sequence[Key]) -> None:
    """With autoflush off, refuse keys that objects hold in memory and not in the database yet.

    The SELECT would miss such a key and the INSERT create it, and the flush of the object
    would then clash with the new row.
    """
    wanted = set(keys)
    base = plan.mapper.base_mapper.class_
    for obj in (*session.new, *session.dirty):
        if not isinstance(obj, base):
            continue
        state = instance_state(obj)
        if plan.key_in(state.dict) in wanted and (state.pending or _key_changed(plan, obj)):
            raise InvalidRequestError(
                f"{obj!r} holds the key {plan.key_in(state.dict)} in memory only: autoflush is off and it is "
                f"not flushed yet; flush the session before asking {plan.cls.__name__}.as_unique() for it"
            )


def _key_changed(plan: _Plan, obj: Any) -> bool:
    """Whether the object's key attributes have changes the database has not seen."""
    state = instance_state(obj)
    return state.modified and any(state.attrs[name].history.has_changes() for name in plan.key_attrs)


def _chunks(keys: Sequence[Key], plan: _Plan) -> Iterable[Sequence[Key]]:
    # Each key value is a bound parameter; stay below every backend's per-statement limit.
    size = max(1, 30_000 // len(plan.key_columns))
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def _select(session: Session, plan: _Plan, keys: Sequence[Key], *, lock: bool) -> dict[Key, Any]:
    """The objects whose rows exist for these keys (a locking read if ``lock``)."""
    statement = select(plan.cls).where(plan.where(keys))
    if lock:
        # On MariaDB's REPEATABLE READ a plain SELECT reads the transaction's snapshot and
        # would miss a row committed since; a locking read sees the latest committed row.
        statement = statement.with_for_update(read=True, of=plan.table)
    objects = session.scalars(statement).all()
    for obj in objects:
        if _key_changed(plan, obj):
            # Only without autoflush: the row says one key and the object another.
            raise InvalidRequestError(
                f"{obj!r} has the row for {plan.key_in(instance_state(obj).dict)} in the database, but its key "
                f"was changed in this session and not flushed (autoflush is off); flush the session "
                f"before asking {plan.cls.__name__}.as_unique() for either key"
            )
    if len(keys) == 1 and len(objects) == 1:
        # The database matched the row to the key (with its own collation): trust it.
        return {keys[0]: objects[0]}
    wanted = set(keys)
    by_key = {plan.key_of_object(obj): obj for obj in objects}
    return {key: obj for key, obj in by_key.items() if key in wanted}


def _create(session: Session, plan: _Plan, wanted: Mapping[Key, Mapping[str, Any]]) -> dict[Key, Any]:
    """Insert the rows of keys the database does not have; read those someone else inserted."""
    dialect = session.get_bind(mapper=plan.mapper).dialect
    insert = plan.insert(dialect)
    # The constructor may change the key (a validator that lower-cases it, say): the row is
    # inserted, and looked for when the INSERT skips it, under the key the constructor made.
    made_of: dict[Key, Key] = {}
    rows: dict[Key, Mapping[str, Any]] = {}
    parameters: dict[Key, dict[str, Any]] = {}
    # The savepoint fallback adds these objects themselves the first time (after a failed
    # attempt it makes new ones, as those went back to transient with the SAVEPOINT).
    constructed: dict[Key, Any] = {}
    for key, row in wanted.items():
        obj = _construct(plan, row)
        values = vars(obj)
        made = made_of[key] = plan.key_of(values)
        if made not in rows:
            rows[made] = row
            parameters[made] = {name: values[name] for name in plan.column_attrs if name in values}
            constructed[made] = obj
    resolved: dict[Key, Any] = {}
    remaining = set(rows)
    stuck = 0
    while remaining and stuck < _ROUNDS:
        before = len(remaining)
        # Every transaction inserts in the same order: two bulk calls cannot each wait
        # for a row the other holds.
        batch = _sorted_keys(remaining)
        if insert is None:
            objects = {}
            for made in batch:
                obj = constructed.pop(made, None)
                objects[made] = obj if obj is not None else _construct(plan, rows[made])
            resolved.update(_insert_with_savepoint(session, plan, objects))
        else:
            written = _insert_ignoring_conflicts(session, plan, insert, dialect, {m: parameters[m] for m in batch})
            if written is None:  # no RETURNING: the rows the locking SELECT finds may be ours
                written = _select_locked(session, plan, batch)
            _remember_created(session, written.values())
            resolved.update(written)
        remaining = {made for made in remaining if made not in resolved}
        if remaining:
            resolved.update(_select_locked(session, plan, _sorted_keys(remaining)))
            remaining = {made for made in remaining if made not in resolved}
        stuck = stuck + 1 if len(remaining) == before else 0
    if remaining:
        names = ", ".join(repr(dict(zip(plan.key_attrs, made, strict=True))) for made in _sorted_keys(remaining))
        raise InvalidRequestError(
            f"{plan.cls.__name__}: could neither find nor insert a row for {names}: a row of "
            f"{plan.table.name!r} holds the key but the SELECT does not return it (loader criteria "
            f"such as a soft-delete filter, or a row of another class mapped to the table), or "
            f"another unique constraint of {plan.table.name!r} refused the row"
        )
    return {key: resolved[made] for key, made in made_of.items()}


def _select_locked(session: Session, plan: _Plan, keys: Sequence[Key]) -> dict[Key, Any]:
    """The rows of these keys, read with a locking SELECT that sees rows committed since."""
    resolved: dict[Key, Any] = {}
    for chunk in _chunks(keys, plan):
        resolved.update(_select(session, plan, chunk, lock=True))
    if len(keys) > 1:
        # A key the database matched to a row of another spelling (a case-insensitive
        # collation, say) is read on its own, so that the database does the matching.
        for key in [k for k in keys if k not in resolved]:
            resolved.update(_select(session, plan, [key], lock=True))
    return resolved


def _sorted_keys(wanted: Iterable[Key]) -> list[Key]:
    try:
        return sorted(wanted)
    except TypeError:  # keys of mixed types: any fixed order will do
        return sorted(wanted, key=repr)


def _construct(plan: _Plan, row: Mapping[str, Any]) -> Any:
    """The object the class's own constructor makes of these values (never added anywhere)."""
    constructor: Callable[..., Any] = plan.cls
    obj = constructor(**row)
    state = instance_state(obj)
    for name in plan.relationships:
        if state.dict.get(name):
            raise ArgumentError(
                f"{plan.cls.__name__}.as_unique() writes columns only; its constructor set the "
                f"relationship {name!r}: set its foreign key column instead"
            )
    return obj


def _insert_ignoring_conflicts(
    session: Session, plan: _Plan, insert: Insert, dialect: Dialect, wanted: Mapping[Key, dict[str, Any]]
) -> dict[Key, Any] | None:
    """The objects of the rows the INSERT wrote, or None if the dialect cannot return them."""
    parameters = list(wanted.values())
    if not dialect.insert_returning:
        session.execute(insert, parameters)
        return None
    # One statement for all the rows: insertmanyvalues would otherwise split them
    # into pages of 1000 (it still splits at the database's parameter limit).
    statement = insert.returning(plan.cls).execution_options(insertmanyvalues_page_size=max(len(parameters), 1))
    written: dict[Key, Any] = {}
    for obj in session.scalars(statement, parameters).all():
        made = plan.key_of_object(obj)
        if made in wanted:
            written[made] = obj
    return written


def _insert_with_savepoint(session: Session, plan: _Plan, objects: Mapping[Key, Any]) -> dict[Key, Any]:
    """For databases without a conflict clause: flush inside a SAVEPOINT, and on an
    IntegrityError roll back to it and let the caller read the rows that won.

    The flush inserts these objects, so SQLAlchemy itself takes them back on a rollback.
    """
    session.flush()  # the session's own pending changes fail, if they fail, outside the SAVEPOINT
    try:
        with session.begin_nested():
            session.add_all(objects.values())
    except IntegrityError:
        return {}
    return dict(objects)
