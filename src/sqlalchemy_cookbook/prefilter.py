"""Criteria that every ORM query of a class gets: soft delete, multi-tenancy.

:class:`PreFilteredQuery` is declared once for a mapped class, or for a mixin and every class
that uses it, and installed on a :class:`~sqlalchemy.orm.sessionmaker` (or a
:class:`~sqlalchemy.orm.Session` class or instance), or with asyncio on an
:class:`~sqlalchemy.ext.asyncio.async_sessionmaker` (or one
:class:`~sqlalchemy.ext.asyncio.AsyncSession`).
From then on the sessions made there add the criteria to each ORM statement they run, through
the :meth:`~sqlalchemy.orm.SessionEvents.do_orm_execute` event and
:func:`~sqlalchemy.orm.with_loader_criteria` (aliases included).
One execution option, named by you, turns it off for one statement.

>>> from datetime import datetime
>>> from sqlalchemy import create_engine, select
>>> from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
>>> from sqlalchemy_cookbook import PreFilteredQuery
>>> class Base(DeclarativeBase):
...     pass
>>> class Note(Base):
...     __tablename__ = "note"
...     id: Mapped[int] = mapped_column(primary_key=True)
...     deleted_at: Mapped[datetime | None]
>>> engine = create_engine("sqlite://")
>>> Base.metadata.create_all(engine)
>>> Session = sessionmaker(engine)
>>> not_deleted = PreFilteredQuery(
...     Note, lambda cls: cls.deleted_at.is_(None), opt_out="include_deleted"
... ).install(Session)
>>> with Session.begin() as session:
...     session.add_all([Note(id=1), Note(id=2, deleted_at=datetime(2024, 5, 1))])
>>> with Session() as session:
...     session.scalars(select(Note.id)).all()
[1]
>>> with Session() as session:
...     session.scalars(select(Note.id).order_by(Note.id).execution_options(include_deleted=True)).all()
[1, 2]

Below, a *covered* class is the class the criteria are declared for, one of its subclasses, or
a mapped class that uses the mixin they are declared for; a *hidden* row is one of its rows that
the criteria exclude.
Each item of the three lists is pinned down by a test, on SQLite, PostgreSQL and MariaDB.

What is filtered, wherever a covered class appears:

* ORM ``SELECT`` statements: their ``FROM`` clause and joins (the criteria go into the ``ON``
  clause), aliases, subqueries, CTEs, unions, ``exists()``, scalar subqueries,
  :func:`~sqlalchemy.orm.column_property` expressions and ``count()``; single-table,
  joined-table and concrete inheritance alike.
  :meth:`Session.get() <sqlalchemy.orm.Session.get>` is filtered when it runs SQL.
* Relationship loads: lazy, ``selectin``, ``subquery``, ``joined`` and ``immediate``, and the
  queries of ``dynamic`` and ``write_only`` collections; also the joined eager loads and column
  properties that come with the ``SELECT`` that refreshes an object
  (:meth:`~sqlalchemy.orm.Session.refresh`, or the first access to an object that has expired:
  after a commit, a rollback, a savepoint's rollback or :meth:`~sqlalchemy.orm.Session.expire`).
* ORM ``UPDATE`` and ``DELETE`` statements: the rows they change, the other covered classes their
  ``WHERE`` clause reads (``UPDATE ... FROM``, ``DELETE ... USING``) and their subqueries.
  On a joined-table subclass, the rows changed are those whose primary key a filtered subquery
  returns, so that the base table, where the criteria's columns usually are, does not join the
  statement without a join condition; ``synchronize_session="evaluate"`` cannot evaluate that
  subquery in Python and says so, the default ``"auto"`` falls back to ``"fetch"``.
* ``INSERT ... FROM SELECT``, and the subqueries that name a covered class in an ``INSERT`` or in
  a Core ``UPDATE`` or ``DELETE`` (one of a ``Table``): they read visible rows only.

What is refused, with :class:`~sqlalchemy.exc.InvalidRequestError`, unless the statement opts
out:

* A bulk ``UPDATE`` by primary key (``session.execute(update(Note), [{"id": 1, ...}])``):
  SQLAlchemy applies no criteria to it.
  ``update(Note).where(...)`` is filtered.
* An ORM upsert that may update the row it collides with: ``on_conflict_do_update()``
  (PostgreSQL, SQLite) or ``on_duplicate_key_update()`` (MariaDB, MySQL); the row may be a hidden
  one.
  ``on_conflict_do_nothing()`` (or ``INSERT IGNORE``) runs, and writes nothing over a hidden
  row.
* An ``UPDATE`` or ``DELETE`` of a mapped class that is not covered but has covered subclasses
  (criteria declared for the subclass, or for a mixin only the subclass uses): it would change the
  subclass's hidden rows.
* :func:`~sqlalchemy.orm.with_expression` with a subquery that reads a covered class:
  SQLAlchemy compiles that subquery as plain SQL, without any criteria.
  Put the subquery among the columns of the statement instead, where it is filtered:
  ``select(Author, subquery.label("count"))``.

What is not filtered:

* Objects the session already holds.
  :meth:`Session.get() <sqlalchemy.orm.Session.get>` and many-to-one lazy loads return an object
  from the identity map without SQL; pass ``populate_existing=True`` to
  :meth:`~sqlalchemy.orm.Session.get` to ask the database.
  Refreshing an object loads its own row whatever the criteria say (the session holds it; only
  what comes with it is filtered), and a flush writes the changes made to it.
  :meth:`~sqlalchemy.orm.Session.merge`, on the other hand, looks the row up through the
  criteria: merging an object whose row is hidden makes a new object, whose ``INSERT`` then fails
  on the primary key.
* Cascades, such as ``cascade="all, delete-orphan"``, reach the related objects the session
  loads, so through the criteria: deleting an object leaves its hidden children alone (what the
  database's foreign keys then do to them is up to their ``ON DELETE`` rule).
* The values of an ``INSERT``: the criteria filter rows, they neither check nor fill in a new one.
  An ``INSERT`` that collides with a hidden row fails on the key.
* :meth:`~sqlalchemy.orm.Session.bulk_update_mappings`, ``bulk_insert_mappings()`` and
  ``bulk_save_objects()``: they run no ORM statement, so no event; they write by primary key,
  hidden rows included.
* SQL that names no mapped class: :func:`~sqlalchemy.sql.expression.text`,
  ``select(Note.__table__)`` or ``update(Note.__table__)``, and the text of
  :meth:`~sqlalchemy.sql.expression.Select.from_statement`.
* A ``SELECT`` of a mapped class that is not covered but has covered subclasses:
  SQLAlchemy puts the criteria where the statement names a covered class, so ``select(Animal)``
  returns the hidden rows of a covered ``Dog``.
  Declare the criteria for the base class (or a mixin of it) when it is queried itself.
* On SQLAlchemy 2.0 only, a class that appears only in the ``WHERE`` clause:
  ``any()``, ``has()`` and ``exists().where(...)`` subqueries are not filtered
  (https://github.com/sqlalchemy/sqlalchemy/issues/13070, fixed in 2.1).
  Write the subquery as ``select(Note.id).where(...).exists()`` instead.
"""

import sys
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, cast

import sqlalchemy
from sqlalchemy import Result, Table, event, inspect, select, tuple_
from sqlalchemy.dialects.postgresql.dml import OnConflictDoNothing as PostgreSQLDoNothing
from sqlalchemy.dialects.sqlite.dml import OnConflictDoNothing as SQLiteDoNothing
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, aliased, with_loader_criteria
from sqlalchemy.orm.util import LoaderCriteriaOption
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter, ColumnClause, ColumnElement
from sqlalchemy.sql.expression import Alias, FromClause, Select, SelectBase, bindparam

__all__ = ["PreFilteredQuery"]

# ORMExecuteState.parameters may be replaced in a do_orm_execute hook from 2.1 on.
_PARAMETERS_WRITABLE = tuple(int(part) for part in sqlalchemy.__version__.split(".")[:2]) >= (2, 1)

# Execution options SQLAlchemy reads itself (those of Executable.execution_options(), and two
# more): an opt-out of one of these names would be switched on by code that means something else,
# such as session.get(..., populate_existing=True).
_SQLALCHEMY_OPTIONS = frozenset(
    {
        "autoflush",
        "compiled_cache",
        "dml_strategy",
        "driver_column_names",
        "identity_token",
        "insertmanyvalues_page_size",
        "is_delete_using",
        "is_update_from",
        "isolation_level",
        "logging_token",
        "max_row_buffer",
        "no_parameters",
        "populate_existing",
        "prebuffer_rows",
        "preserve_rowcount",
        "render_nulls",
        "schema_translate_map",
        "stream_results",
        "synchronize_session",
        "yield_per",
    }
)

# The strategy with_expression() sets on the attribute it loads (a private detail of
# SQLAlchemy's loader options, the same in 2.0 and 2.1).
_QUERY_EXPRESSION = (("query_expression", True),)

Criteria = Callable[[Any], ColumnElement[bool]]
Params = Callable[[Session], Mapping[str, Any]]


class _OneMapperCriteria(LoaderCriteriaOption):
    """:func:`~sqlalchemy.orm.with_loader_criteria` for one mapper and its aliases, not its subclasses.

    SQLAlchemy gives a subclass the criteria of an option made for its base class.  An ``UPDATE``
    of a joined-table subclass needs other criteria than a ``SELECT`` of its base class, so in
    ``UPDATE`` and ``DELETE`` statements each mapper gets an option of its own.
    ``_all_mappers()`` is where SQLAlchemy 2.0 and 2.1 list the mappers an option applies to.
    """

    # The base class's cache key serves (it names the mapper and the criteria; the class is part
    # of every cache key), but SQLAlchemy reads the attributes it is made of from the class itself.
    _traverse_internals = LoaderCriteriaOption._traverse_internals

    def _all_mappers(self) -> Iterator[Mapper[Any]]:
        assert self.entity is not None
        yield self.entity.mapper


class PreFilteredQuery:
    """Criteria that every ORM statement against a class, its subclasses or a mixin's classes gets.

    :param entity: a mapped class (its subclasses are included), or a mixin or other plain base
        class: then every mapped class that inherits from it is included.
    :param criteria: a function of one argument, the class, returning the
        ``WHERE`` criteria as a SQL expression, typically a lambda:
        ``lambda cls: cls.deleted_at.is_(None)``.
        SQLAlchemy calls it once per class and caches what it returns with the compiled
        statement, so it must not read anything that changes between calls: a value that
        depends on the session (a tenant) goes in as ``bindparam("tenant_id")``, and ``params``
        supplies it.
    :type criteria: ~collections.abc.Callable[[type], ~sqlalchemy.sql.expression.ColumnElement[bool]]
    :param opt_out: the name of the execution option that turns the criteria off for one
        statement, e.g. ``select(Note).execution_options(include_deleted=True)``; its value must
        be ``True`` or ``False``.
        It also applies to the eager loads of that statement (:func:`~sqlalchemy.orm.selectinload`,
        :func:`~sqlalchemy.orm.subqueryload`) but not to lazy loads that happen later.
    :param params: for criteria with :func:`~sqlalchemy.sql.expression.bindparam` placeholders,
        a function that returns their values for a session, e.g.
        ``lambda session: {"tenant_id": session.info["tenant_id"]}``.
        It is called for every ORM statement of the sessions it is installed on that the
        criteria reach; a session it raises for cannot run any (a session with no tenant reads
        nothing).
        The values override parameters of the same name passed to
        :meth:`~sqlalchemy.orm.Session.execute`, so choose names that no statement uses.
    :type params: ~collections.abc.Callable[[~sqlalchemy.orm.Session],
        ~collections.abc.Mapping[str, ~typing.Any]] | None
    :raises TypeError: for an argument of the wrong kind: an ``entity`` that is not a class,
        ``criteria`` that are an expression rather than a function, an ``opt_out`` that is not an
        identifier or is an option SQLAlchemy reads itself, a ``params`` that is not callable.
        Criteria that return something other than a SQL expression (a Python ``bool``, from
        ``is None`` where ``.is_(None)`` was meant), or whose placeholders and ``params`` do not
        match, are refused with :class:`TypeError` by the first statement that runs.

    Each ``SELECT`` gets one :func:`~sqlalchemy.orm.with_loader_criteria` option, made once,
    so the statement cache serves filtered statements like any other; the values travel as
    bound parameters.
    ``UPDATE``, ``DELETE`` and ``INSERT`` statements get the criteria with the values already
    bound (SQLAlchemy 2.0 does not pass execution parameters through ORM-enabled ``UPDATE`` and
    ``DELETE``, and a parameter named after a column is reserved for the ``SET`` clause).
    """

    entity: type[Any]
    criteria: Criteria
    opt_out: str
    params: Params | None

    def __init__(
        self,
        entity: type[Any],
        criteria: Criteria,
        *,
        opt_out: str,
        params: Params | None = None,
    ) -> None:
        if not isinstance(entity, type):
            raise TypeError(
                f"PreFilteredQuery: entity must be a mapped class or a mixin (a class); "
                f"got {type(entity).__name__}: {entity!r}"
            )
        if not callable(criteria):
            raise TypeError(
                f"PreFilteredQuery: criteria must be a function of the class that returns the "
                f"WHERE criteria, such as lambda cls: cls.deleted_at.is_(None); "
                f"got {type(criteria).__name__}: {criteria}"
            )
        if not isinstance(opt_out, str) or not opt_out.isidentifier():
            raise TypeError(
                f"PreFilteredQuery: opt_out must be the name of an execution option, such as "
                f'"include_deleted"; got {type(opt_out).__name__}: {opt_out!r}'
            )
        if opt_out in _SQLALCHEMY_OPTIONS:
            raise TypeError(
                f"PreFilteredQuery: opt_out={opt_out!r} is an execution option of SQLAlchemy's own, "
                f"which would turn the criteria off wherever it is used; choose another name"
            )
        if params is not None and not callable(params):
            raise TypeError(
                f"PreFilteredQuery: params must be a function of the session that returns the "
                f"values of the criteria's placeholders; got {type(params).__name__}: {params!r}"
            )
        self.entity = entity
        self.criteria = criteria
        self.opt_out = opt_out
        self.params = params
        # Made once: its cache key is the lambda's code, the same for every statement.
        self._select_option = with_loader_criteria(entity, criteria, include_aliases=True)
        self._checked = False

    def __repr__(self) -> str:
        return f"<PreFilteredQuery {self.entity.__qualname__} opt_out={self.opt_out!r}>"

    def install(self, target: Any) -> Self:
        """Apply the criteria in every session that ``target`` makes or is.

        :param target: a :class:`~sqlalchemy.orm.sessionmaker`, a
            :class:`~sqlalchemy.orm.scoped_session`, a :class:`~sqlalchemy.orm.Session`
            subclass, or one session; with asyncio, an
            :class:`~sqlalchemy.ext.asyncio.async_sessionmaker`, an
            :class:`~sqlalchemy.ext.asyncio.async_scoped_session` (its ``session_factory``), or one
            :class:`~sqlalchemy.ext.asyncio.AsyncSession`.
            Installing on :class:`~sqlalchemy.orm.Session` itself reaches every session in
            the process.
        :returns: this object, so that declaring and installing can be one statement.
        :raises TypeError: ``target`` is an :class:`~sqlalchemy.ext.asyncio.AsyncSession`
            class, whose events are those of the :class:`~sqlalchemy.orm.Session` class every
            one of its sessions wraps.

        SQLAlchemy's session events are synchronous and belong to the
        :class:`~sqlalchemy.orm.Session` that an :class:`~sqlalchemy.ext.asyncio.AsyncSession`
        wraps (its :attr:`~sqlalchemy.ext.asyncio.AsyncSession.sync_session`); an
        :class:`~sqlalchemy.ext.asyncio.async_sessionmaker` has none
        (``event.listen(maker, "do_orm_execute", ...)`` raises ``No such event``).
        So, as :class:`~sqlalchemy.orm.sessionmaker` does for its own sessions, installing on an
        async_sessionmaker gives it a :class:`~sqlalchemy.orm.Session` subclass of its own as
        ``sync_session_class`` (a subclass of the one it had) and listens there: only the
        sessions it makes from then on are filtered, not those it made before, nor those of
        other makers.
        :meth:`uninstall` gives the maker its class back once no :class:`PreFilteredQuery` is
        installed on it.
        :ref:`reference-prefilter-async` shows it run.
        """
        event.listen(_event_target(target, self, installing=True), "do_orm_execute", self._on_execute)
        return self

    def uninstall(self, target: Any) -> None:
        """Stop applying the criteria in the sessions of ``target`` (the one given to :meth:`install`).

        :raises sqlalchemy.exc.InvalidRequestError: the criteria are not installed on ``target``.
        """
        listened = _event_target(target, self, installing=False)
        event.remove(listened, "do_orm_execute", self._on_execute)
        _uninstalled(target, listened, self)

    def _on_execute(self, state: ORMExecuteState) -> Result[Any] | None:
        opted_out = state.execution_options.get(self.opt_out, False)
        if opted_out is True:
            return None
        if opted_out is not False:
            # A string such as "false" would otherwise turn the criteria off.
            raise TypeError(f"{self!r}: execution option {self.opt_out} must be True or False, not {opted_out!r}")
        if not self._checked:
            self._check_criteria()
        if state.is_select:
            return self._filter_select(state)
        if state.is_update or state.is_delete or state.is_insert:
            self._filter_write(state)
        return None

    def _filter_select(self, state: ORMExecuteState) -> Result[Any] | None:
        # The option that loaded an object travels with it into its lazy loads and refreshes:
        # add it once.  A refresh (a column load) gets it too: SQLAlchemy leaves the refreshed
        # object's own row alone, and filters the joined eager loads that come with it.
        carried = False
        for option in getattr(state.statement, "_with_options", ()):
            if option is self._select_option:
                carried = True
            elif not state.is_relationship_load:
                # A relationship load carries the options of the statement that loaded its
                # parent, with_expression() ones included: that statement was refused for them
                # or opted out.
                self._refuse_unfiltered_expression(state, option)
        if not carried:
            state.statement = state.statement.options(self._select_option)
        if self.params is None:
            return None
        # The values reach the statement as execution parameters, so its cached form
        # serves every session.  2.1 reads parameters back from the event; 2.0 needs the
        # statement run again with them (invoke_statement() merges them in).
        values = self._values(state.session)
        if _PARAMETERS_WRITABLE:
            # A SELECT runs with one set of parameters (a mapping), never a list of them.
            state.parameters = {**cast(Mapping[str, Any], state.parameters or {}), **values}
            return None
        if state.parameters is None:
            state.parameters = {}
        return state.invoke_statement(params=dict(values))

    def _refuse_unfiltered_expression(self, state: ORMExecuteState, option: Any) -> None:
        for element in getattr(option, "context", ()):
            if getattr(element, "strategy", None) != _QUERY_EXPRESSION:
                continue
            for expression in getattr(element, "_extra_criteria", ()):
                if self._reads_covered_table(expression, state):
                    raise InvalidRequestError(
                        f"{self!r} cannot filter the subquery given to with_expression(): "
                        f"SQLAlchemy compiles it as plain SQL, without criteria. Put the subquery "
                        f"among the statement's columns instead, where it is filtered "
                        f'(select(Entity, subquery.label("name"))), or add the criteria to it '
                        f"yourself and run the statement with execution_options({self.opt_out}=True)."
                    )

    def _reads_covered_table(self, expression: Any, state: ORMExecuteState) -> bool:
        """Whether a SELECT in ``expression`` reads the table of a covered class.

        The tables of the statement's own classes do not count: a subquery that names them is
        correlated to the statement's rows, which are filtered.
        """
        own = [table for mapper in state.all_mappers for table in mapper.tables]
        covered = [mapper.local_table for mapper in self._mappers()]
        for element in visitors.iterate(expression):
            if not isinstance(element, Select):
                continue
            for source in element.get_final_froms():
                if any(source is table for table in own):
                    continue
                if any(source.is_derived_from(table) for table in covered):
                    return True
        return False

    def _filter_write(self, state: ORMExecuteState) -> None:
        # An Update, Delete or Insert: Executable, as ORMExecuteState types it, has no where().
        statement: Any = state.statement
        orm_change = state.is_orm_statement and (state.is_update or state.is_delete)
        target = state.bind_mapper if state.is_orm_statement else None
        if target is not None:
            self._refuse_unfiltered_write(state, target)
        # Other statements are filtered only for the SELECTs they contain.
        if not orm_change and not any(isinstance(element, SelectBase) for element in visitors.iterate(statement)):
            return
        mappers = self._mappers()
        if not mappers:
            return
        values = self._values(state.session)
        # The rows an ORM UPDATE or DELETE changes get the criteria of its class through the
        # options, which also reach its subqueries; a joined-table subclass gets them through a
        # subquery on its primary key, hence one option per mapper.
        joined_target: Mapper[Any] | None = None
        other_tables: list[ColumnElement[bool]] = []
        if orm_change and target is not None:
            if target.local_table is not target.persist_selectable:
                joined_target = target
            other_tables = list(self._joined_criteria(statement, target, values))
        statement = statement.options(
            *(
                _OneMapperCriteria(
                    mapper.class_,
                    self._visible_keys(mapper, mapper.local_table, values)
                    if mapper is joined_target
                    else self._bound(mapper.class_, values),
                    include_aliases=True,
                )
                for mapper in mappers
            )
        )
        if other_tables:
            statement = statement.where(*other_tables)
        state.statement = statement

    def _refuse_unfiltered_write(self, state: ORMExecuteState, target: Mapper[Any]) -> None:
        if not any(self._covers(mapper) for mapper in target.self_and_descendants):
            return
        name = target.class_.__name__
        if state.is_insert:
            clause = getattr(state.statement, "_post_values_clause", None)
            if clause is not None and not isinstance(clause, (PostgreSQLDoNothing, SQLiteDoNothing)):
                raise InvalidRequestError(
                    f"{self!r} cannot filter an upsert of {name} that updates the row it collides "
                    f"with ({type(clause).__name__}): that row may be one the criteria hide. "
                    f"Use on_conflict_do_nothing(), or add the criteria to the update yourself "
                    f"(on_conflict_do_update(where=...) on PostgreSQL and SQLite) and run it with "
                    f"execution_options({self.opt_out}=True)."
                )
            return
        kind = "UPDATE" if state.is_update else "DELETE"
        if not self._covers(target):
            covered = next(m for m in target.self_and_descendants if self._covers(m)).class_.__name__
            raise InvalidRequestError(
                f"{self!r} cannot filter an {kind} of {name}: it changes rows of its subclass "
                f"{covered} too, and SQLAlchemy applies the criteria only where a statement names "
                f"a class they cover. Declare the criteria for {name} (or a mixin of it), or run "
                f"the statement with execution_options({self.opt_out}=True)."
            )
        if state.is_executemany:
            raise InvalidRequestError(
                f"{self!r} cannot filter a bulk {kind} by primary key "
                f"(a list of parameter sets): SQLAlchemy does not apply its criteria there. "
                f"Use {kind.lower()}(...).where(...), or execution_options({self.opt_out}=True) "
                f"to run it unfiltered."
            )

    def _joined_criteria(
        self, statement: Any, target: Mapper[Any], values: Mapping[str, Any]
    ) -> Iterator[ColumnElement[bool]]:
        """Criteria for the covered tables an UPDATE or DELETE reads besides its own.

        SQLAlchemy adds ``UPDATE ... FROM`` and ``DELETE ... USING`` tables without criteria.
        A table is filtered through the mapper that owns it: the root of a single-table
        hierarchy, or the class whose own table it is.
        """
        owners = [
            mapper
            for mapper in self._mappers()
            if mapper.inherits is None or mapper.local_table is not mapper.inherits.local_table
        ]
        seen: list[FromClause] = []
        for source in _outer_tables(statement):
            if source is target.local_table or any(source is other for other in seen):
                continue
            seen.append(source)
            for owner in owners:
                if source.is_derived_from(owner.local_table):
                    if owner.local_table is not owner.persist_selectable:
                        yield self._visible_keys(owner, source, values)
                    elif source is owner.local_table:
                        yield self._bound(owner.class_, values)
                    else:
                        yield self._bound(aliased(owner.class_, source), values)
                    break

    def _visible_keys(self, mapper: Mapper[Any], source: FromClause, values: Mapping[str, Any]) -> ColumnElement[bool]:
        """``source``'s rows (``mapper``'s own table or an alias of it) that the criteria show.

        A joined-table subclass's criteria name its base table; added as they are to a statement
        on the subclass's table, they would join the base table to it with no join condition.
        """
        visible = aliased(mapper.class_, flat=True)
        columns = list(mapper.local_table.primary_key)
        keys = [source.c[column.key] for column in columns]
        shown = select(*(getattr(visible, mapper.get_property_by_column(column).key) for column in columns)).where(
            self._bound(visible, values)
        )
        if len(keys) == 1:
            return keys[0].in_(shown)
        return tuple_(*keys).in_(shown)

    def _covers(self, mapper: Mapper[Any] | None) -> bool:
        return mapper is not None and issubclass(mapper.class_, self.entity)

    def _mapped_classes(self) -> Iterator[type[Any]]:
        """The entity if mapped, else its topmost mapped subclasses (each covers its own)."""
        stack = [self.entity]
        while stack:
            cls = stack.pop()
            if inspect(cls, raiseerr=False) is not None:
                yield cls
            else:
                stack.extend(cls.__subclasses__())

    def _mappers(self) -> list[Mapper[Any]]:
        """Every covered mapper, subclasses included, each once."""
        found: dict[Mapper[Any], None] = {}
        for cls in self._mapped_classes():
            found.update(dict.fromkeys(cast(Mapper[Any], inspect(cls)).self_and_descendants))
        return list(found)

    def _values(self, session: Session) -> Mapping[str, Any]:
        if self.params is None:
            return {}
        values = self.params(session)
        if not isinstance(values, Mapping):
            raise TypeError(f"{self!r}: params must return a mapping of placeholder names to values, not {values!r}")
        return values

    def _expression(self, entity: Any) -> ColumnElement[bool]:
        expression = self.criteria(entity)
        if not isinstance(expression, ColumnElement):
            raise TypeError(
                f"{self!r}: the criteria returned {type(expression).__name__} {expression!r} for "
                f"{entity}, not a SQL expression (a Python comparison such as `is None` or `in` "
                f"gives a bool: write .is_(None), .in_(...))"
            )
        return expression

    def _check_criteria(self) -> None:
        """Refuse criteria that return no SQL, or whose placeholders ``params`` does not match.

        Run by the first statement, not at declaration: the mapped classes may not exist yet then.
        """
        mappers = self._mappers()
        if not mappers:
            return
        placeholders: set[str] = set()
        for mapper in mappers:
            placeholders.update(
                element.key
                for element in visitors.iterate(self._expression(mapper.class_))
                if isinstance(element, BindParameter) and element.required
            )
        if placeholders and self.params is None:
            raise TypeError(
                f"{self!r}: the criteria have the placeholders {sorted(placeholders)} but no params "
                f"function to give their values"
            )
        if self.params is not None and not placeholders:
            raise TypeError(
                f"{self!r}: params is given but the criteria have no bindparam() placeholder for its values"
            )
        self._checked = True

    def _bound(self, entity: Any, values: Mapping[str, Any]) -> ColumnElement[bool]:
        """The criteria for ``entity`` with each placeholder replaced by an anonymous bound value."""

        def replace(element: visitors.ExternallyTraversible, **kw: Any) -> Any:
            if isinstance(element, BindParameter) and element.key in values:
                return bindparam(None, values[element.key], type_=element.type)
            return None

        return visitors.replacement_traverse(self._expression(entity), {}, replace)


# -- asyncio: where the events of an AsyncSession, and of an async_sessionmaker, go ---------------


@dataclass(eq=False)
class _MakersClass:
    """The Session subclass install() gave an async_sessionmaker, and what it replaced."""

    made: type[Session]
    # Whether the maker had sync_session_class among its arguments, and its value.
    had_argument: bool
    replaced: Any
    installed: list[PreFilteredQuery] = field(default_factory=list)


# Each async_sessionmaker's class, kept after uninstall() so that installing again serves the
# sessions it made while installed, as a sessionmaker's class does.
_MAKERS: weakref.WeakKeyDictionary[Any, _MakersClass] = weakref.WeakKeyDictionary()


def _asyncio() -> Any:
    """SQLAlchemy's asyncio extension if the program has loaded it, else None.

    An AsyncSession or async_sessionmaker cannot exist unless it is loaded, and importing it
    here would make a program that uses none need greenlet (on SQLAlchemy 2.1).
    """
    return sys.modules.get("sqlalchemy.ext.asyncio")


def _event_target(target: Any, prefilter: PreFilteredQuery, *, installing: bool) -> Any:
    """What event.listen() takes for ``target``'s sessions: ``target`` itself unless it is async."""
    asyncio = _asyncio()
    if asyncio is None:
        return target
    if isinstance(target, asyncio.async_scoped_session):
        target = target.session_factory
    if isinstance(target, asyncio.AsyncSession):
        return target.sync_session
    if isinstance(target, asyncio.async_sessionmaker):
        return _makers_class(target, prefilter, installing=installing)
    if isinstance(target, type) and issubclass(target, asyncio.AsyncSession):
        wrapped: type[Session] = getattr(target, "sync_session_class", Session)
        raise TypeError(
            f"{prefilter!r} cannot be installed on the AsyncSession class {target.__name__}: its events are "
            f"those of the Session class its sessions wrap ({wrapped.__name__}), shared by every session of "
            f"that class. Install it on an async_sessionmaker (only its sessions), on one AsyncSession, or on "
            f"a Session subclass of your own that you give as sync_session_class=."
        )
    return target


def _current_class(maker: Any) -> type[Session]:
    """The Session class the maker's next AsyncSession will wrap."""
    current: type[Session] = maker.kw.get("sync_session_class") or maker.class_.sync_session_class
    return current


def _makers_class(maker: Any, prefilter: PreFilteredQuery, *, installing: bool) -> type[Session]:
    found = _MAKERS.get(maker)
    current = _current_class(maker)
    if not installing:
        if found is None or current is not found.made or prefilter not in found.installed:
            raise InvalidRequestError(f"{prefilter!r} is not installed on {maker!r}")
        return found.made
    if found is None or (current is not found.made and found.made.__bases__ != (current,)):
        # First install, or the maker was given another class since: subclass what it has now,
        # under the same name, as sessionmaker does.
        made: type[Session] = type(current.__name__, (current,), {"__module__": current.__module__})
        found = _MAKERS[maker] = _MakersClass(made, False, None)
    if current is not found.made:
        found.had_argument = "sync_session_class" in maker.kw
        found.replaced = maker.kw.get("sync_session_class")
        maker.configure(sync_session_class=found.made)
    if prefilter not in found.installed:
        found.installed.append(prefilter)
    return found.made


def _uninstalled(target: Any, listened: Any, prefilter: PreFilteredQuery) -> None:
    """After uninstall(): an async_sessionmaker with no criteria left gets its class back."""
    asyncio = _asyncio()
    if asyncio is None:
        return
    if isinstance(target, asyncio.async_scoped_session):
        target = target.session_factory
    found = _MAKERS.get(target) if isinstance(target, asyncio.async_sessionmaker) else None
    if found is None or listened is not found.made:
        return
    found.installed.remove(prefilter)
    if found.installed or target.kw.get("sync_session_class") is not found.made:
        return
    if found.had_argument:
        target.kw["sync_session_class"] = found.replaced
    else:
        del target.kw["sync_session_class"]


def _outer_tables(statement: Any) -> Iterator[FromClause]:
    """The tables and table aliases whose columns ``statement`` names outside its subqueries."""
    stack = list(statement.get_children())
    while stack:
        element = stack.pop()
        if isinstance(element, SelectBase) or (
            isinstance(element, FromClause) and not isinstance(element, ColumnElement)
        ):
            continue
        if isinstance(element, ColumnClause) and (
            isinstance(element.table, Table)
            or (isinstance(element.table, Alias) and isinstance(element.table.element, Table))
        ):
            yield element.table
        stack.extend(element.get_children())
