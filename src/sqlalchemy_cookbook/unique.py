"""One object per unique key: :class:`UniqueObject`.

A mapped class that mixes in :class:`UniqueObject` gets two class methods that ask for objects
by their unique key instead of constructing them:

* :meth:`UniqueObject.as_unique` returns the one object for one key;
* :meth:`UniqueObject.as_unique_all` resolves many keys at once.

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

The cache is emptied whenever the session's transaction ends (commit, rollback or close), and
an object is taken from it only while it is still persistent in that session, unexpired and not
marked for deletion; otherwise the database is asked again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

from sqlalchemy import event, inspect, select, tuple_
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError, IntegrityError, InvalidRequestError
from sqlalchemy.orm import Mapper, Session, SessionTransaction
from sqlalchemy.schema import Column, Index, Table, UniqueConstraint
from sqlalchemy.sql import and_
from sqlalchemy.sql.dml import Insert

__all__ = ["UniqueObject"]

Key = tuple[Hashable, ...]
_T = TypeVar("_T")

# Where the per-session cache lives in Session.info.
_CACHE = "sqlalchemy_cookbook.unique"
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

    Limits:

    * Only column attributes can be given; relationships are refused
      (set the foreign key column instead).
    * The class must be mapped to one table (no joined-table inheritance).
    * The cache compares key values in Python: on a case-insensitive collation, ``"PY"`` and
      ``"py"`` are two cache entries for one row (the database still finds the row, at the
      cost of a SELECT each); normalise keys, for instance lower-case them, to avoid that.
    * The row is written by an INSERT statement, not by the unit of work, so the mapper
      events :meth:`~sqlalchemy.orm.MapperEvents.before_insert` and
      :meth:`~sqlalchemy.orm.MapperEvents.after_insert` do not run for it
      (except with the savepoint fallback).
    """

    __unique_key__: ClassVar[tuple[str, ...]]

    @classmethod
    def as_unique(cls, session: Session, /, **values: Any) -> Self:
        """The one object of this class whose unique key has these values.

        ``values`` must include every attribute of the key; the others are used only when
        the object has to be created, and passed to the class's constructor.
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
        :raises TypeError: a key attribute is missing from ``values``, or, when the object has
            to be created, the class's constructor refuses one of them.
        :raises ValueError: a key value is ``None`` (a unique constraint does not compare NULLs).
        :raises sqlalchemy.exc.ArgumentError: the class has no usable unique key, or a
            relationship was given.
        :raises sqlalchemy.exc.IntegrityError: a new row clashes with another unique constraint
            of the table (PostgreSQL, SQLite).
        :raises sqlalchemy.exc.InvalidRequestError: the same clash on MariaDB, whose conflict
            clause covers every unique key; or, with autoflush off, the key's object is marked
            for deletion in this session and not flushed yet.
        """
        return _resolve(session, cls, [values])[0]

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

        It raises the same errors as :meth:`as_unique`.

        :param session: the session the objects belong to.
        :type session: ~sqlalchemy.orm.Session
        :param rows: one mapping of values per object, as :meth:`as_unique` takes them.
        :type rows: ~collections.abc.Iterable[~collections.abc.Mapping[str, ~typing.Any]]
        :returns: the persistent objects, one per item of ``rows``.
        """
        return _resolve(session, cls, list(rows))


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
    inserts: dict[str, Insert | None] = field(default_factory=dict)

    def key_of(self, values: Mapping[str, Any]) -> Key:
        try:
            key = tuple(values[name] for name in self.key_attrs)
        except KeyError as missing:
            raise TypeError(
                f"{self.cls.__name__}.as_unique() needs a value for {missing.args[0]!r}, "
                f"part of its unique key {self.key_attrs}"
            ) from None
        if any(value is None for value in key):
            raise ValueError(
                f"{self.cls.__name__}: a unique key cannot hold None "
                f"(the database does not compare NULLs): {dict(zip(self.key_attrs, key, strict=False))}"
            )
        return key

    def key_of_object(self, obj: Any) -> Key:
        return tuple(getattr(obj, name) for name in self.key_attrs)

    def where(self, keys: Sequence[Key]) -> Any:
        """The WHERE clause that finds the rows of these keys."""
        if len(self.key_columns) == 1:
            column = self.key_columns[0]
            if len(keys) == 1:
                return column == keys[0][0]
            return column.in_([key[0] for key in keys])
        if len(keys) == 1:
            return and_(*(column == value for column, value in zip(self.key_columns, keys[0], strict=False)))
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
    mapper: Mapper[Any] = inspect(cls)
    table = mapper.local_table
    if len(mapper.tables) != 1 or not isinstance(table, Table):
        raise ArgumentError(f"{cls.__name__}: UniqueObject needs a class mapped to a single table")
    columns: set[Any] = set(table.columns)
    column_attrs = frozenset(prop.key for prop in mapper.column_attrs if all(c in columns for c in prop.columns))
    relationships = frozenset(prop.key for prop in mapper.relationships)
    candidates = _unique_column_sets(table)
    declared: tuple[str, ...] | None = getattr(cls, "__unique_key__", None)
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
    )


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


# --- the per-session cache ----------------------------------------------------------------


def _cache(session: Session) -> dict[tuple[type[Any], Key], Any]:
    cache: dict[tuple[type[Any], Key], Any] | None = session.info.get(_CACHE)
    if cache is None:
        cache = session.info[_CACHE] = {}
        if not event.contains(session, "after_transaction_end", _transaction_ended):
            event.listen(session, "after_transaction_end", _transaction_ended)
            event.listen(session, "after_soft_rollback", _rolled_back)
    return cache


def _forget(session: Session) -> None:
    cache = session.info.get(_CACHE)
    if cache:
        cache.clear()


def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended (commit, rollback or close): every row may change now."""
    if transaction.parent is None:
        _forget(session)


def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """Any rollback, a SAVEPOINT's too, may have taken rows the cache points to."""
    _forget(session)


def _usable(session: Session, obj: Any) -> bool:
    """May a cached object be handed out without asking the database?"""
    state = inspect(obj)
    return state.session is session and state.persistent and not state.expired_attributes and obj not in session.deleted


# --- resolving keys -----------------------------------------------------------------------


def _resolve(session: Session, cls: type[_T], rows: Sequence[Mapping[str, Any]]) -> list[_T]:
    plan = _plan(cls)
    cache = _cache(session)
    keys = [plan.key_of(row) for row in rows]
    found: dict[Key, Any] = {}
    wanted: dict[Key, Mapping[str, Any]] = {}
    for key, row in zip(keys, rows, strict=False):
        if key in found or key in wanted:
            continue
        cached = cache.get((cls, key))
        if cached is not None and _usable(session, cached):
            found[key] = cached
        else:
            wanted[key] = row
    if wanted:
        resolved = _from_database(session, plan, wanted)
        for key, obj in resolved.items():
            cache[(cls, key)] = obj
        found.update(resolved)
    return [found[key] for key in keys]


def _from_database(session: Session, plan: _Plan, wanted: Mapping[Key, Mapping[str, Any]]) -> dict[Key, Any]:
    for row in wanted.values():
        _refuse_relationships(plan, row)
    keys = list(wanted)
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
    resolved: dict[Key, Any] = {}
    remaining = dict(wanted)
    stuck = 0
    while remaining and stuck < _ROUNDS:
        before = len(remaining)
        # Every transaction inserts in the same order: two bulk calls cannot each wait
        # for a row the other holds.
        batch = {key: remaining[key] for key in _sorted_keys(remaining)}
        if insert is None:
            resolved.update(_insert_with_savepoint(session, plan, batch))
        else:
            resolved.update(_insert_ignoring_conflicts(session, plan, insert, dialect, batch))
        remaining = {k: v for k, v in remaining.items() if k not in resolved}
        if remaining:
            for chunk in _chunks(list(remaining), plan):
                resolved.update(_select(session, plan, chunk, lock=True))
            if len(remaining) > 1:
                # A key the database matched to a row of another spelling (a case-insensitive
                # collation, say) is read on its own, so that the database does the matching.
                for key in [k for k in remaining if k not in resolved]:
                    resolved.update(_select(session, plan, [key], lock=True))
            remaining = {k: v for k, v in remaining.items() if k not in resolved}
        stuck = stuck + 1 if len(remaining) == before else 0
    if remaining:
        names = ", ".join(repr(dict(zip(plan.key_attrs, key, strict=False))) for key in remaining)
        raise InvalidRequestError(
            f"{plan.cls.__name__}: could neither find nor insert a row for {names}; "
            f"another unique constraint of {plan.table.name!r} may have refused it"
        )
    return resolved


def _sorted_keys(wanted: Mapping[Key, Any]) -> list[Key]:
    try:
        return sorted(wanted)
    except TypeError:  # keys of mixed types: any fixed order will do
        return sorted(wanted, key=repr)


def _construct(plan: _Plan, row: Mapping[str, Any]) -> Any:
    """The object the class's own constructor makes of these values (never added anywhere)."""
    constructor: Callable[..., Any] = plan.cls
    obj = constructor(**row)
    state = inspect(obj)
    for name in plan.relationships:
        if state.dict.get(name):
            raise ArgumentError(
                f"{plan.cls.__name__}.as_unique() writes columns only; its constructor set the "
                f"relationship {name!r}: set its foreign key column instead"
            )
    return obj


def _refuse_relationships(plan: _Plan, row: Mapping[str, Any]) -> None:
    given = sorted(name for name in plan.relationships if row.get(name))
    if given:
        raise ArgumentError(
            f"{plan.cls.__name__}.as_unique() writes columns only; got the relationship "
            f"{given[0]!r}: give its foreign key column instead"
        )


def _insert_ignoring_conflicts(
    session: Session, plan: _Plan, insert: Insert, dialect: Dialect, wanted: Mapping[Key, Mapping[str, Any]]
) -> dict[Key, Any]:
    made_for: dict[Key, list[Key]] = {}
    parameters: list[dict[str, Any]] = []
    for key, row in wanted.items():
        values = vars(_construct(plan, row))
        made = plan.key_of(values)  # the key after the constructor (a validator may change it)
        if made not in made_for:
            made_for[made] = []
            parameters.append({name: values[name] for name in plan.column_attrs if name in values})
        made_for[made].append(key)
    resolved: dict[Key, Any] = {}
    if dialect.insert_returning:
        # One statement for all the rows: insertmanyvalues would otherwise split them
        # into pages of 1000 (it still splits at the database's parameter limit).
        statement = insert.returning(plan.cls).execution_options(insertmanyvalues_page_size=max(len(parameters), 1))
        for obj in session.scalars(statement, parameters).all():
            for key in made_for.get(plan.key_of_object(obj), ()):
                resolved[key] = obj
    else:
        session.execute(insert, parameters)
    return resolved


def _insert_with_savepoint(session: Session, plan: _Plan, wanted: Mapping[Key, Mapping[str, Any]]) -> dict[Key, Any]:
    """For databases without a conflict clause: flush inside a SAVEPOINT, and on an
    IntegrityError roll back to it and let the caller read the rows that won."""
    by_made_key: dict[Key, Any] = {}
    objects: dict[Key, Any] = {}
    for key, row in wanted.items():
        obj = _construct(plan, row)
        objects[key] = by_made_key.setdefault(plan.key_of(vars(obj)), obj)
    session.flush()  # the session's own pending changes fail, if they fail, outside the SAVEPOINT
    try:
        with session.begin_nested():
            session.add_all(by_made_key.values())
    except IntegrityError:
        return {}
    return objects
