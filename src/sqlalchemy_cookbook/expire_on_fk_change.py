"""Setting ``bar.foo_id`` updates ``bar.foo``: :class:`ExpireRelationshipOnFKChange`.

The ORM keeps foreign keys in step with relationships, not the other way round: after
``bar.foo = foo7`` the flush writes ``bar.foo_id = 7``, but after ``bar.foo_id = 7`` nothing
changes ``bar.foo``, which keeps whatever it held before, and the ``bars`` collections of the
old and the new ``Foo`` keep their old contents.

:meth:`ExpireRelationshipOnFKChange.install` watches, for every mapped class of a declarative
base (or :class:`~sqlalchemy.orm.registry`), the attributes that hold a foreign key used by a
:func:`~sqlalchemy.orm.relationship`.  When one of them is set on an object that belongs to a
:class:`~sqlalchemy.orm.Session`, it:

1. drops what the many-to-one relationships built on that column hold (``bar.foo``), loaded
   value and unflushed change alike, unless they already point where the new value points.
   The next access loads the new parent from the identity map, or with one SELECT; and the
   foreign key you set last is the one the flush writes.
   A pending object (added, not yet flushed) gets the same: the recipe turns on relationship
   loading for it with :meth:`Session.enable_relationship_loading()
   <sqlalchemy.orm.Session.enable_relationship_loading>`, so ``bar.foo`` loads from
   ``bar.foo_id`` before the INSERT;
2. expires the one-to-many collections (``foo.bars``) of the old and the new parent, when the
   Session holds them, so their next access reloads them.  With autoflush on (the default)
   that reload flushes first and shows the move; with autoflush off it shows the rows as the
   database has them until you flush.

It does nothing for objects that belong to no Session (so constructing ``Bar(foo_id=7)`` is
quiet), nothing while the ORM loads rows (loading does not set attributes through events), and
nothing for the values the flush itself writes into foreign keys.
A collection with unflushed changes of its own is never expired, since that would throw the
changes away: the recipe only takes the object out of the collection's unflushed additions
when it was put there by an earlier ``bar.foo = ...``.

Example::

    >>> from sqlalchemy import ForeignKey, create_engine
    >>> from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
    >>> from sqlalchemy_cookbook import ExpireRelationshipOnFKChange
    >>> class Base(DeclarativeBase):
    ...     pass
    >>> fk_sync = ExpireRelationshipOnFKChange.install(Base)
    >>> class Foo(Base):
    ...     __tablename__ = "foo"
    ...     id: Mapped[int] = mapped_column(primary_key=True)
    ...     bars: Mapped[list["Bar"]] = relationship(back_populates="foo")
    >>> class Bar(Base):
    ...     __tablename__ = "bar"
    ...     id: Mapped[int] = mapped_column(primary_key=True)
    ...     foo_id: Mapped[int | None] = mapped_column(ForeignKey("foo.id"))
    ...     foo: Mapped[Foo | None] = relationship(back_populates="bars")
    >>> engine = create_engine("sqlite://")
    >>> Base.metadata.create_all(engine)
    >>> session = Session(engine)
    >>> session.add_all([Foo(id=1), Foo(id=7), Bar(id=1, foo_id=1)])
    >>> session.commit()
    >>> bar = session.get(Bar, 1)
    >>> foo1, foo7 = session.get(Foo, 1), session.get(Foo, 7)
    >>> (bar.foo.id, len(foo1.bars), len(foo7.bars))
    (1, 1, 0)
    >>> bar.foo_id = 7
    >>> (bar.foo.id, len(foo1.bars), len(foo7.bars))
    (7, 0, 1)
    >>> session.close()
"""

import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import (
    NO_VALUE,
    LoaderCallableStatus,
    Mapper,
    MapperProperty,
    RelationshipDirection,
    RelationshipProperty,
    Session,
    registry,
)
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.collections import collection_adapter
from sqlalchemy.orm.exc import UnmappedColumnError
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.sql import ClauseElement

__all__ = ["ExpireRelationshipOnFKChange"]


@dataclass(frozen=True, eq=False)
class _Link:
    """One relationship whose contents follow foreign key attributes of the ``child`` class.

    For a many-to-one (``Bar.foo``) the relationship lives on the child; for a one-to-many
    (``Foo.bars``) it lives on the parent.  Either way ``child_keys[i]`` holds the value of the
    parent's ``parent_keys[i]``.
    """

    key: str
    collection: bool
    child: Mapper[Any]
    parent: Mapper[Any]
    child_keys: tuple[str, ...]
    parent_keys: tuple[str, ...]
    # The referenced columns are the parent's primary key, in its order: the parent can be
    # looked up in the identity map from the foreign key alone.
    by_primary_key: bool

    def values(self, state: InstanceState[Any], key: str, value: Any) -> tuple[Any, ...]:
        """The foreign key of ``state`` as this link sees it, with ``key`` set to ``value``."""
        dict_ = state.dict
        return tuple(value if k == key else dict_.get(k, NO_VALUE) for k in self.child_keys)

    def refers_to(self, parent: object | None, values: tuple[Any, ...]) -> bool:
        """Whether ``values`` is the foreign key of ``parent`` (``None``: all values are None)."""
        if parent is None:
            return all(v is None for v in values)
        dict_ = instance_state(parent).dict
        return all(_equal(dict_.get(k, NO_VALUE), v) for k, v in zip(self.parent_keys, values))

    def lookup(self, session: Session, values: tuple[Any, ...]) -> object | None:
        """The parent with these key values, if the session's identity map holds it (no SQL)."""
        if not self.by_primary_key or not all(_usable(v) for v in values):
            return None
        identity = self.parent.identity_key_from_primary_key(values)
        found: object | None = session.identity_map.get(identity)
        return found if isinstance(found, self.parent.class_) else None


@dataclass(frozen=True)
class _Plan:
    """What a set of one attribute on one mapped class has to update."""

    many_to_ones: tuple[_Link, ...]
    collections: tuple[_Link, ...]


_NOTHING = _Plan((), ())


def _equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, ClauseElement) or isinstance(b, ClauseElement):
        return False
    try:
        return bool(a == b)
    except TypeError:
        return False


def _usable(value: Any) -> bool:
    """A key value the identity map can be asked about."""
    # LoaderCallableStatus: the attribute was never loaded, or was expired.
    return value is not None and not isinstance(value, (LoaderCallableStatus, ClauseElement))


class ExpireRelationshipOnFKChange:
    """Keeps relationships in step with the foreign key attributes they are built on.

    Install it once per declarative base (or :class:`~sqlalchemy.orm.registry`), before or
    after the mapped classes are declared::

        >>> from sqlalchemy.orm import DeclarativeBase
        >>> class Base(DeclarativeBase):
        ...     pass
        >>> fk_sync = ExpireRelationshipOnFKChange.install(Base)
        >>> ExpireRelationshipOnFKChange.install(Base) is fk_sync
        True

    Every class mapped by that base, now or later, is covered: many-to-one relationships
    (``Bar.foo``), including view-only ones, and one-to-many relationships, lists or scalars
    (``Foo.bars``), including those with no many-to-one on the other side.
    Many-to-many relationships have no foreign key on either mapped class and are left alone,
    as are ``lazy="dynamic"`` and ``lazy="write_only"`` collections, which query every time.

    Parents are found through the session's identity map when the foreign key refers to their
    primary key; for a foreign key to another unique column, only the parent the object's
    many-to-one holds in memory is found.
    """

    def __init__(self, target: registry) -> None:
        """Use :meth:`install`, which also makes sure a registry is watched only once."""
        self._registry = target
        self._seen: set[RelationshipProperty[Any]] = set()
        self._many_to_ones: list[_Link] = []
        self._collections: list[_Link] = []
        self._watched: dict[tuple[Mapper[Any], str], Any] = {}
        self._plans: dict[tuple[Mapper[Any], str], _Plan] = {}

    @classmethod
    def install(cls, target: type[Any] | registry) -> "ExpireRelationshipOnFKChange":
        """Watch every class mapped by ``target``, a declarative base or a registry.

        Installing again on the same base or registry returns the instance already installed.

        :raises TypeError: ``target`` is neither a :class:`~sqlalchemy.orm.registry` nor a class
            with a ``registry`` attribute (such as a subclass of
            :class:`~sqlalchemy.orm.DeclarativeBase`).
        """
        found = target if isinstance(target, registry) else getattr(target, "registry", None)
        if not isinstance(found, registry):
            raise TypeError(
                f"install() needs a declarative base or a registry, not {target!r}"
            )
        installed = _INSTALLED.get(found)
        if installed is not None:
            return installed
        _listen_globally()
        installed = cls(found)
        _INSTALLED[found] = installed
        installed._scan()
        return installed

    @property
    def registry(self) -> registry:
        """The registry whose classes are watched."""
        return self._registry

    def watched(self) -> dict[str, list[str]]:
        """Each watched attribute, and the relationships that follow it.

        Configures the registry's mappers first (as the first query or object would), so that
        every relationship is known::

            >>> fk_sync.watched()
            {}
        """
        self._registry.configure()
        self._scan()
        found: dict[str, list[str]] = {}
        for link in (*self._many_to_ones, *self._collections):
            owner = link.parent if link.collection else link.child
            for key in link.child_keys:
                name = f"{link.child.class_.__name__}.{key}"
                found.setdefault(name, []).append(f"{owner.class_.__name__}.{link.key}")
        return {name: sorted(found[name]) for name in sorted(found)}

    def remove(self) -> None:
        """Stop watching: remove every listener this instance added.

        The registry can be installed on again afterwards.
        """
        for (mapper, key), listener in self._watched.items():
            event.remove(mapper.class_manager[key], "set", listener)
        self._watched.clear()
        self._plans.clear()
        self._seen.clear()
        self._many_to_ones.clear()
        self._collections.clear()
        if _INSTALLED.get(self._registry) is self:
            del _INSTALLED[self._registry]

    # -- finding the relationships -------------------------------------------------------------

    def _scan(self) -> None:
        """Take in the relationships of every configured mapper not seen yet."""
        added = False
        for mapper in self._registry.mappers:
            if not mapper.configured:
                continue
            for prop in mapper.iterate_properties:
                if isinstance(prop, RelationshipProperty) and prop not in self._seen:
                    self._seen.add(prop)
                    added = self._take(prop) or added
        if added:
            self._plans.clear()

    def _take(self, prop: RelationshipProperty[Any]) -> bool:
        pairs = prop.local_remote_pairs or []
        if prop.direction is RelationshipDirection.MANYTOONE:
            child, parent = prop.parent, prop.mapper
            columns = [(local, remote) for local, remote in pairs]
        elif prop.direction is RelationshipDirection.ONETOMANY and prop.lazy not in (
            "dynamic",
            "write_only",
        ):
            child, parent = prop.mapper, prop.parent
            columns = [(remote, local) for local, remote in pairs]
        else:
            return False
        if not columns:
            return False
        try:
            child_props = [child.get_property_by_column(c) for c, _ in columns]
            parent_keys = [parent.get_property_by_column(p).key for _, p in columns]
        except UnmappedColumnError:
            return False
        parent_columns = [p for _, p in columns]
        primary_key = list(parent.primary_key)
        by_primary_key = len(parent_columns) == len(primary_key) and set(parent_columns) == set(
            primary_key
        )
        if by_primary_key:
            order = [parent_columns.index(c) for c in primary_key]
            child_props = [child_props[i] for i in order]
            parent_keys = [parent_keys[i] for i in order]
        link = _Link(
            key=prop.key,
            collection=prop.direction is RelationshipDirection.ONETOMANY,
            child=child,
            parent=parent,
            child_keys=tuple(p.key for p in child_props),
            parent_keys=tuple(parent_keys),
            by_primary_key=by_primary_key,
        )
        (self._collections if link.collection else self._many_to_ones).append(link)
        for column_prop in child_props:
            self._watch(column_prop)
        return True

    def _watch(self, column_prop: MapperProperty[Any]) -> None:
        # Listen where the attribute is defined; `propagate` covers subclasses, also later ones.
        where = (column_prop.parent, column_prop.key)
        if where in self._watched:
            return
        key = column_prop.key

        def on_set(state: InstanceState[Any], value: Any, oldvalue: Any, initiator: Any) -> None:
            self._on_set(state, key, value, oldvalue)

        event.listen(column_prop.parent.class_manager[key], "set", on_set, raw=True, propagate=True)
        self._watched[where] = on_set

    def _plan(self, mapper: Mapper[Any], key: str) -> _Plan:
        found = self._plans.get((mapper, key))
        if found is None:
            many_to_ones = tuple(
                link for link in self._many_to_ones if key in link.child_keys and mapper.isa(link.child)
            )
            collections = tuple(
                link for link in self._collections if key in link.child_keys and mapper.isa(link.child)
            )
            found = _Plan(many_to_ones, collections) if many_to_ones or collections else _NOTHING
            self._plans[(mapper, key)] = found
        return found

    # -- reacting to a set ---------------------------------------------------------------------

    def _on_set(self, state: InstanceState[Any], key: str, value: Any, oldvalue: Any) -> None:
        session = state.session
        # Objects outside a Session (being constructed, transient, detached) are left alone, and
        # so are the values the flush copies into foreign keys (SQLAlchemy has no public flag
        # for "inside a flush"; `_flushing` has meant exactly that since 0.x, in 2.0 and 2.1).
        if session is None or session._flushing or _equal(value, oldvalue):
            return
        pending = state.pending
        if not (pending or state.persistent):
            return
        plan = self._plan(state.mapper, key)
        if plan is _NOTHING:
            return
        obj = state.obj()
        dict_ = state.dict

        # 1. Many-to-ones that point elsewhere than the new value are dropped; what they held
        # (and held before an unflushed change) are parents whose collections may list `obj`.
        remembered: list[object] = []
        stale: list[str] = []
        for link in plan.many_to_ones:
            if link.key not in dict_ or link.refers_to(dict_[link.key], link.values(state, key, value)):
                continue
            stale.append(link.key)
            if plan.collections:
                history = state.attrs[link.key].history
                remembered.extend(p for p in (*history.added, *history.unchanged, *history.deleted) if p is not None)
        if stale:
            if pending:
                # Session.expire() refuses pending objects: commit an empty value, which also
                # discards the unflushed change, then unload it.
                for name in stale:
                    set_committed_value(obj, name, None)
                    del dict_[name]
            else:
                session.expire(obj, stale)
        if pending and plan.many_to_ones:
            session.enable_relationship_loading(obj)

        # 2. Collections of the old and the new parent.
        for link in plan.collections:
            new_values = link.values(state, key, value)
            candidates = [p for p in remembered if isinstance(p, link.parent.class_)]
            candidates.append(link.lookup(session, link.values(state, key, oldvalue)))
            candidates.append(link.lookup(session, new_values))
            done: set[int] = set()
            for parent in candidates:
                if parent is None or id(parent) in done:
                    continue
                done.add(id(parent))
                self._refresh_collection(session, link, parent, obj, new_values)

    @staticmethod
    def _refresh_collection(
        session: Session, link: _Link, parent: object, obj: object, new_values: tuple[Any, ...]
    ) -> None:
        parent_state = instance_state(parent)
        loaded = link.key in parent_state.dict
        if parent_state.persistent and (not loaded or not parent_state.attrs[link.key].history.has_changes()):
            # Unloaded: expiring also forgets what backref events queued for it.
            session.expire(parent, [link.key])
            return
        if not loaded or link.refers_to(parent, new_values):
            return
        # Unflushed changes of its own: keep them, but take back the addition an earlier
        # `bar.foo = parent` made, which the flush would otherwise turn into bar.foo_id.
        history = parent_state.attrs[link.key].history
        if any(added is obj for added in history.added):
            collection = parent_state.dict[link.key]
            collection_adapter(collection).remove_without_event(obj)


# One registry, one installed instance; the module's two global listeners dispatch to it.
_INSTALLED: "weakref.WeakKeyDictionary[registry, ExpireRelationshipOnFKChange]" = (
    weakref.WeakKeyDictionary()
)
_listening = False


def _listen_globally() -> None:
    global _listening
    if not _listening:
        event.listen(Mapper, "after_configured", _after_configured)
        event.listen(Session, "pending_to_persistent", _pending_to_persistent)
        _listening = True


def _after_configured() -> None:
    for installed in list(_INSTALLED.values()):
        installed._scan()


def _pending_to_persistent(session: Session, obj: object) -> None:
    """Forget a ``None`` that a many-to-one loaded while its object was pending.

    Loads for a pending object never autoflush, so a parent that was itself still pending was
    not found; now that both rows exist, the next access loads it.
    """
    state = instance_state(obj)
    installed = _INSTALLED.get(state.mapper.registry)
    if installed is None:
        return
    dict_ = state.dict
    stale = []
    for link in installed._many_to_ones:
        if (
            dict_.get(link.key, NO_VALUE) is None
            and state.mapper.isa(link.child)
            and all(_usable(dict_.get(k, NO_VALUE)) for k in link.child_keys)
        ):
            stale.append(link.key)
    if stale:
        session.expire(obj, stale)
