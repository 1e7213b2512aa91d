"""Criteria that every ORM query of a class gets: soft delete, multi-tenancy.

:class:`PreFilteredQuery` is declared once for a mapped class, or for a mixin and every class
that uses it, and installed on a :class:`~sqlalchemy.orm.sessionmaker` (or a
:class:`~sqlalchemy.orm.Session` class or instance).
From then on the sessions made there add the criteria to each ORM ``SELECT``, ``UPDATE`` and
``DELETE`` they run, through the :meth:`~sqlalchemy.orm.SessionEvents.do_orm_execute` event and
:func:`~sqlalchemy.orm.with_loader_criteria` (aliases included): statements, lazy and eager
relationship loads, joins, subqueries and ``count()`` alike.
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

What it cannot filter, by design or by SQLAlchemy's design, is listed under
:class:`PreFilteredQuery`; each of those limits is pinned down by a test.
"""

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Self, cast

import sqlalchemy
from sqlalchemy import Result, event, inspect
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.expression import bindparam

__all__ = ["PreFilteredQuery"]

# ORMExecuteState.parameters may be replaced in a do_orm_execute hook from 2.1 on.
_PARAMETERS_WRITABLE = tuple(int(part) for part in sqlalchemy.__version__.split(".")[:2]) >= (2, 1)

Criteria = Callable[[Any], ColumnElement[bool]]
Params = Callable[[Session], Mapping[str, Any]]


class PreFilteredQuery:
    """Criteria that every ORM statement against a class, its subclasses or a mixin's classes gets.

    :param entity: a mapped class (its subclasses are included), or a mixin or other plain base
        class: then every mapped class that inherits from it is included.
    :param criteria: a function of one argument, the class, returning the
        ``WHERE`` criteria, typically a lambda: ``lambda cls: cls.deleted_at.is_(None)``.
        SQLAlchemy calls it once per class and caches what it returns with the compiled
        statement, so it must not read anything that changes between calls: a value that
        depends on the session (a tenant) goes in as ``bindparam("tenant_id")``, and ``params``
        supplies it.
    :type criteria: ~collections.abc.Callable[[type], ~sqlalchemy.sql.expression.ColumnElement[bool]]
    :param opt_out: the name of the execution option that turns the criteria off for one
        statement, e.g. ``select(Note).execution_options(include_deleted=True)``.
        It also applies to the eager loads of that statement (:func:`~sqlalchemy.orm.selectinload`,
        :func:`~sqlalchemy.orm.subqueryload`) but not to lazy loads that happen later.
    :param params: for criteria with :func:`~sqlalchemy.sql.expression.bindparam` placeholders,
        a function that returns their values for a session, e.g.
        ``lambda session: {"tenant_id": session.info["tenant_id"]}``.
        It is called for every ORM statement of the sessions it is installed on; a session it
        raises for cannot run any (a session with no tenant reads nothing).
        The values override parameters of the same name passed to
        :meth:`~sqlalchemy.orm.Session.execute`, so choose names that no statement uses.
    :type params: ~collections.abc.Callable[[~sqlalchemy.orm.Session],
        ~collections.abc.Mapping[str, ~typing.Any]] | None

    Each ``SELECT`` gets one :func:`~sqlalchemy.orm.with_loader_criteria` option, made once,
    so the statement cache serves filtered statements like any other; the values travel as
    bound parameters.
    ``UPDATE`` and ``DELETE`` statements get the criteria with the values already bound
    (SQLAlchemy 2.0 does not pass execution parameters through ORM-enabled ``UPDATE`` and
    ``DELETE``, and a parameter named after a column is reserved for the ``SET`` clause).

    What is not filtered:

    * Objects the session already holds.
      :meth:`Session.get() <sqlalchemy.orm.Session.get>` and many-to-one lazy loads return an
      object from the identity map without SQL; pass ``populate_existing=True`` to
      :meth:`~sqlalchemy.orm.Session.get` to ask the database.
      Refreshing an object (:meth:`~sqlalchemy.orm.Session.refresh`, an expired attribute)
      loads it whatever the criteria say: the session holds it already.
      :meth:`~sqlalchemy.orm.Session.merge`, on the other hand, looks the row up through the
      criteria: merging an object whose row is filtered out makes a new object, whose
      ``INSERT`` then fails on the primary key.
    * Bulk ``UPDATE`` by primary key (``session.execute(update(Note), [{"id": 1, ...}])``):
      SQLAlchemy does not apply the criteria to it, so it is refused with
      :class:`~sqlalchemy.exc.InvalidRequestError` unless the statement opts out.
    * SQL that names no mapped class: :func:`~sqlalchemy.sql.expression.text`,
      ``select(Note.__table__)``, and the text of
      :meth:`~sqlalchemy.sql.expression.Select.from_statement`.
    * ``INSERT``: the criteria filter rows, they do not set values on new ones.
    * On SQLAlchemy 2.0 only, a class that appears only in the ``WHERE`` clause:
      ``any()``, ``has()`` and ``exists().where(...)`` subqueries are not filtered
      (https://github.com/sqlalchemy/sqlalchemy/issues/13070, fixed in 2.1).
      Write the subquery as ``select(Note.id).where(...).exists()`` instead.
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
        self.entity = entity
        self.criteria = criteria
        self.opt_out = opt_out
        self.params = params
        # Made once: its cache key is the lambda's code, the same for every statement.
        self._select_option = with_loader_criteria(entity, criteria, include_aliases=True)

    def __repr__(self) -> str:
        return f"<PreFilteredQuery {self.entity.__qualname__} opt_out={self.opt_out!r}>"

    def install(self, target: Any) -> Self:
        """Apply the criteria in every session that ``target`` makes or is.

        :param target: a :class:`~sqlalchemy.orm.sessionmaker`, a
            :class:`~sqlalchemy.orm.scoped_session`, a :class:`~sqlalchemy.orm.Session`
            subclass, or one session.
            Installing on :class:`~sqlalchemy.orm.Session` itself reaches every session in
            the process.
        :returns: this object, so that declaring and installing can be one statement.
        """
        event.listen(target, "do_orm_execute", self._on_execute)
        return self

    def uninstall(self, target: Any) -> None:
        """Stop applying the criteria in the sessions of ``target`` (the one given to :meth:`install`)."""
        event.remove(target, "do_orm_execute", self._on_execute)

    def _on_execute(self, state: ORMExecuteState) -> Result[Any] | None:
        if state.execution_options.get(self.opt_out, False):
            return None
        if state.is_select:
            # A refresh of an object the session holds is not filtered, and the option that
            # loaded an object travels with it into its lazy loads: add it once.
            if not state.is_column_load and not self._carried_by(state.statement):
                state.statement = state.statement.options(self._select_option)
            if self.params is None:
                return None
            # The values reach the statement as execution parameters, so its cached form
            # serves every session.  2.1 reads parameters back from the event; 2.0 needs the
            # statement run again with them (invoke_statement() merges them in).
            values = self.params(state.session)
            if _PARAMETERS_WRITABLE:
                # A SELECT runs with one set of parameters (a mapping), never a list of them.
                state.parameters = {**cast(Mapping[str, Any], state.parameters or {}), **values}
                return None
            if state.parameters is None:
                state.parameters = {}
            return state.invoke_statement(params=dict(values))
        if (state.is_update or state.is_delete) and state.is_orm_statement:
            if state.is_executemany and self._covers(state.bind_mapper):
                raise InvalidRequestError(
                    f"{self!r} cannot filter a bulk UPDATE by primary key "
                    f"(a list of parameter sets): SQLAlchemy does not apply its criteria there. "
                    f"Use update(...).where(...), or execution_options({self.opt_out}=True) "
                    f"to run it unfiltered."
                )
            values = self.params(state.session) if self.params is not None else {}
            state.statement = state.statement.options(
                *(
                    with_loader_criteria(cls, self._bound(cls, values), include_aliases=True)
                    for cls in self._mapped_classes()
                )
            )
        return None

    def _carried_by(self, statement: Any) -> bool:
        return any(option is self._select_option for option in getattr(statement, "_with_options", ()))

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

    def _bound(self, cls: type[Any], values: Mapping[str, Any]) -> ColumnElement[bool]:
        """The criteria for `cls` with each placeholder replaced by an anonymous bound value."""

        def replace(element: visitors.ExternallyTraversible, **kw: Any) -> Any:
            if isinstance(element, BindParameter) and element.key in values:
                return bindparam(None, values[element.key], type_=element.type)
            return None

        return visitors.replacement_traverse(self.criteria(cls), {}, replace)
