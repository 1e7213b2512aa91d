"""Setting ``bar.foo_id`` updates ``bar.foo``: :class:`ExpireRelationshipOnFKChange`.

The ORM copies relationships into foreign keys when it flushes, never foreign keys into
relationships: after ``bar.foo_id = 7``, a ``bar.foo`` that was already read keeps what it held,
even after the flush, and so do the ``bars`` collections of the old and the new ``Foo``.
:meth:`ExpireRelationshipOnFKChange.install` fixes that for every class of a declarative base
(or :class:`~sqlalchemy.orm.registry`).
Whenever a foreign key attribute that a :func:`~sqlalchemy.orm.relationship` is built on is set
on an object that belongs to a :class:`~sqlalchemy.orm.Session`, it:

1. drops what the many-to-one relationships on that column hold (``bar.foo``), loaded value
   and unflushed change alike, unless they already point where the new value points; the next
   access loads the new parent from the identity map, or with one SELECT, and the foreign key
   you set last is the one the flush writes (or the set is refused, when the flush would not
   write it: see :class:`ExpireRelationshipOnFKChange`);
2. expires the one-to-many collections (``foo.bars``) of the old and the new parent, where the
   session holds them, so that their next access reloads them; when a parent cannot be told
   before the flush, every loaded collection of that relationship in the session is expired.

A set costs the same whatever the size of the collections involved (but for the case of an
object taken out of a collection, see :class:`ExpireRelationshipOnFKChange`).

>>> from sqlalchemy import ForeignKey, create_engine
>>> from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
>>> from sqlalchemy_cookbook import ExpireRelationshipOnFKChange
>>> class Base(DeclarativeBase):
...     pass
>>> fk_sync = ExpireRelationshipOnFKChange.install(Base)
>>> class Foo(Base):
...     __tablename__ = "foo"
...     id: Mapped[int] = mapped_column(primary_key=True)
...     bars: Mapped[list["Bar"]] = relationship(back_populates="foo", order_by="Bar.id")
...     def __repr__(self) -> str:
...         return f"Foo({self.id})"
>>> class Bar(Base):
...     __tablename__ = "bar"
...     id: Mapped[int] = mapped_column(primary_key=True)
...     foo_id: Mapped[int | None] = mapped_column(ForeignKey("foo.id"))
...     foo: Mapped[Foo | None] = relationship(back_populates="bars")
...     def __repr__(self) -> str:
...         return f"Bar({self.id})"
>>> engine = create_engine("sqlite://")
>>> Base.metadata.create_all(engine)
>>> with Session(engine) as session:
...     session.add_all([Foo(id=1), Foo(id=7), Bar(id=1, foo_id=1)])
...     session.commit()

A persistent object: ``bar.foo`` and both collections follow the new value.

>>> session = Session(engine)
>>> foo1, foo7, bar = session.get(Foo, 1), session.get(Foo, 7), session.get(Bar, 1)
>>> bar.foo, foo1.bars, foo7.bars
(Foo(1), [Bar(1)], [])
>>> bar.foo_id = 7
>>> bar.foo, foo1.bars, foo7.bars
(Foo(7), [], [Bar(1)])
>>> session.rollback()

A pending object (added, not flushed yet): ``foo`` loads from the foreign key before the INSERT.

>>> new = Bar(id=2)
>>> session.add(new)
>>> new.foo_id = 7
>>> new.foo
Foo(7)
>>> session.close()
"""

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import (
    NO_VALUE,
    LoaderCallableStatus,
    Mapper,
    MapperProperty,
    RelationshipDirection,
    RelationshipProperty,
    Session,
    SessionTransaction,
    registry,
)
from sqlalchemy.orm.attributes import QueryableAttribute, instance_dict, instance_state, set_committed_value
from sqlalchemy.orm.collections import collection_adapter
from sqlalchemy.orm.exc import UnmappedColumnError
from sqlalchemy.orm.identity import IdentityMap
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.sql import ClauseElement

__all__ = ["ExpireRelationshipOnFKChange"]

# Where a session notes which relationships _expire_everywhere() has swept since its last flush,
# and the collections expired inside a SAVEPOINT.
_SWEPT = "sqlalchemy_cookbook.expire_on_fk_change.swept"
_IN_SAVEPOINT = "sqlalchemy_cookbook.expire_on_fk_change.in_savepoint"


# -- finding the relationships a foreign key attribute feeds ---------------------------------------


@dataclass(frozen=True, eq=False)
class _Link:
    """One relationship whose contents follow foreign key attributes of the ``child`` class.

    For a many-to-one (``Bar.foo``) the relationship lives on the child; for a one-to-many
    (``Foo.bars``) it lives on the parent.  Either way ``child_keys[i]`` holds the value of the
    parent's ``parent_keys[i]``.
    """

    key: str
    collection: bool
    # A list (or other collection class), not one object: one-to-many with uselist.
    uselist: bool
    child: Mapper[Any]
    parent: Mapper[Any]
    child_keys: tuple[str, ...]
    parent_keys: tuple[str, ...]
    # One column: the foreign key is the value set, as a 1-tuple (spares a call on every set).
    single: bool
    # The referenced columns are the parent's primary key, in its order: the parent can be
    # looked up in the identity map from the foreign key alone.
    by_primary_key: bool
    # The relationship on the other side that back_populates (or a backref) keeps in step.
    reverse: str | None
    # One-to-many only: the parent's attribute (it knows which children were taken out of a
    # parent's collection), and whether the flush deletes such children.
    attribute: QueryableAttribute[Any] | None
    delete_orphan: bool

    def values(self, dict_: dict[str, Any], key: str, value: Any) -> tuple[Any, ...]:
        """The foreign key in ``dict_`` as this link sees it, with ``key`` set to ``value``."""
        if len(self.child_keys) == 1:
            return (value,)
        return tuple(value if k == key else dict_.get(k, NO_VALUE) for k in self.child_keys)

    def refers_to(self, parent: object | None, values: tuple[Any, ...]) -> bool:
        """Whether ``values`` is the foreign key of ``parent`` (``None``: all values are None)."""
        if parent is None:
            return all(v is None for v in values)
        dict_ = instance_state(parent).dict
        return all(_equal(dict_.get(k, NO_VALUE), v) for k, v in zip(self.parent_keys, values, strict=False))

    def lookup(self, identity_map: IdentityMap, values: tuple[Any, ...], pending: bool) -> object | None:
        """The parent these key values name, if the identity map holds it (no SQL).

        ``None`` when they name no parent, or one the session does not hold; :data:`_UNKNOWN` when
        that cannot be told before the flush: a SQL expression, a value not loaded (except on a
        pending object, whose key never set is NULL), or a key to a column other than the
        parent's primary key.
        """
        for v in values:
            if v is None:
                return None
            if isinstance(v, _UNUSABLE):
                return None if pending and isinstance(v, LoaderCallableStatus) else _UNKNOWN
        if not self.by_primary_key:
            return _UNKNOWN
        found: object | None = identity_map.get(self.parent.identity_key_from_primary_key(values))
        return found if isinstance(found, self.parent.class_) else None


# What _Link.lookup() returns for a parent that cannot be told before the flush.
_UNKNOWN = object()


@dataclass(frozen=True)
class _Plan:
    """What a set of one attribute on one mapped class has to update."""

    many_to_ones: tuple[_Link, ...]
    collections: tuple[_Link, ...]
    # Each collection, with the many-to-one of ``many_to_ones`` that is its other side, if any.
    collections_and_reverses: tuple[tuple[_Link, _Link | None], ...]
    # Some collection has no such many-to-one.
    unlinked: bool


_NOTHING = _Plan((), (), (), False)


def _equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, ClauseElement) or isinstance(b, ClauseElement):
        return False
    try:
        return bool(a == b)
    except TypeError:
        return False


# Key values the identity map cannot be asked about: an attribute never loaded or expired
# (LoaderCallableStatus), a SQL expression whose value the flush will fetch.
_UNUSABLE = (LoaderCallableStatus, ClauseElement)


def _usable(value: Any) -> bool:
    return value is not None and not isinstance(value, _UNUSABLE)


def _back_populates(prop: RelationshipProperty[Any]) -> str | None:
    # A string, or from 2.1 on also the attribute itself (back_populates=Foo.bars).
    found: Any = prop.back_populates
    if found is None or isinstance(found, str):
        return found
    return getattr(found, "key", None)


def _link_for(prop: RelationshipProperty[Any]) -> tuple[_Link, list[MapperProperty[Any]]] | None:
    """The link ``prop`` makes, and the child's foreign key attributes that feed it.

    ``None`` for what the recipe leaves alone: many-to-many, dynamic and write-only collections,
    and relationships on columns that no attribute maps.
    """
    pairs = prop.local_remote_pairs or []
    if prop.direction is RelationshipDirection.MANYTOONE:
        child, parent = prop.parent, prop.mapper
        columns = [(local, remote) for local, remote in pairs]
    elif prop.direction is RelationshipDirection.ONETOMANY and prop.lazy not in ("dynamic", "write_only"):
        child, parent = prop.mapper, prop.parent
        columns = [(remote, local) for local, remote in pairs]
    else:
        return None
    if not columns:
        return None
    try:
        child_props = [child.get_property_by_column(c) for c, _ in columns]
        parent_keys = [parent.get_property_by_column(p).key for _, p in columns]
    except UnmappedColumnError:
        return None
    parent_columns = [p for _, p in columns]
    primary_key = list(parent.primary_key)
    by_primary_key = len(parent_columns) == len(primary_key) and set(parent_columns) == set(primary_key)
    if by_primary_key:
        # Identity keys list the primary key in the mapper's order, not the relationship's.
        order = [parent_columns.index(c) for c in primary_key]
        child_props = [child_props[i] for i in order]
        parent_keys = [parent_keys[i] for i in order]
    collection = prop.direction is RelationshipDirection.ONETOMANY
    link = _Link(
        key=prop.key,
        collection=collection,
        uselist=bool(prop.uselist),
        child=child,
        parent=parent,
        child_keys=tuple(p.key for p in child_props),
        parent_keys=tuple(parent_keys),
        single=len(child_props) == 1,
        by_primary_key=by_primary_key,
        reverse=_back_populates(prop),
        attribute=parent.class_manager[prop.key] if collection else None,
        delete_orphan=collection and prop.cascade.delete_orphan,
    )
    return link, child_props


class _Relationships:
    """The links of one registry's mappers, and which of them a set of one attribute touches."""

    def __init__(self, target: registry) -> None:
        self.registry = target
        self.many_to_ones: list[_Link] = []
        self.collections: list[_Link] = []
        self._seen: set[RelationshipProperty[Any]] = set()
        # The listener reads this dict itself, so it is cleared in place, never replaced.
        self.plans: dict[tuple[Mapper[Any], str], _Plan] = {}
        self._many_to_ones_of: dict[Mapper[Any], tuple[_Link, ...]] = {}

    def scan(self) -> list[MapperProperty[Any]]:
        """Take in the relationships of every configured mapper not seen yet.

        Returns the foreign key attributes of the new links, for the caller to watch.
        """
        feeding: list[MapperProperty[Any]] = []
        for mapper in self.registry.mappers:
            # An unconfigured mapper may not know its relationships' columns yet; the
            # after_configured listener comes back for it.
            if not mapper.configured:
                continue
            for prop in mapper.iterate_properties:
                if isinstance(prop, RelationshipProperty) and prop not in self._seen:
                    self._seen.add(prop)
                    found = _link_for(prop)
                    if found is not None:
                        link, child_props = found
                        (self.collections if link.collection else self.many_to_ones).append(link)
                        feeding.extend(child_props)
        if feeding:
            # A new link may concern a (mapper, key) whose answer is cached.
            self.plans.clear()
            self._many_to_ones_of.clear()
        return feeding

    def plan(self, mapper: Mapper[Any], key: str) -> _Plan:
        """What setting ``key`` on an instance of ``mapper`` has to update (cached)."""
        found = self.plans.get((mapper, key))
        if found is None:
            many_to_ones = tuple(
                link for link in self.many_to_ones if key in link.child_keys and mapper.isa(link.child)
            )
            collections = tuple(link for link in self.collections if key in link.child_keys and mapper.isa(link.child))
            pairs = tuple(
                (c, next((m for m in many_to_ones if m.reverse == c.key and c.reverse == m.key), None))
                for c in collections
            )
            found = (
                _Plan(many_to_ones, collections, pairs, any(r is None for _, r in pairs))
                if many_to_ones or collections
                else _NOTHING
            )
            self.plans[(mapper, key)] = found
        return found

    def many_to_ones_of(self, mapper: Mapper[Any]) -> tuple[_Link, ...]:
        """The many-to-ones an instance of ``mapper`` holds (cached)."""
        found = self._many_to_ones_of.get(mapper)
        if found is None:
            found = tuple(link for link in self.many_to_ones if mapper.isa(link.child))
            self._many_to_ones_of[mapper] = found
        return found

    def names(self) -> dict[str, list[str]]:
        """``"Class.attribute"`` of each foreign key attribute, and of the relationships it feeds."""
        found: dict[str, list[str]] = {}
        for link in (*self.many_to_ones, *self.collections):
            owner = link.parent if link.collection else link.child
            for key in link.child_keys:
                name = f"{link.child.class_.__name__}.{key}"
                found.setdefault(name, []).append(f"{owner.class_.__name__}.{link.key}")
        return {name: sorted(found[name]) for name in sorted(found)}

    def clear(self) -> None:
        self.many_to_ones.clear()
        self.collections.clear()
        self._seen.clear()
        self.plans.clear()
        self._many_to_ones_of.clear()


# -- reacting to a set -----------------------------------------------------------------------------


class _Listeners:
    """The ``set`` listeners on foreign key attributes, kept so that they can be removed."""

    def __init__(self, relationships: _Relationships) -> None:
        self._relationships = relationships
        self._watched: dict[tuple[Mapper[Any], str], Any] = {}

    def watch(self, column_prop: MapperProperty[Any]) -> None:
        # Listen where the attribute is defined; `propagate` covers subclasses, also later ones.
        where = (column_prop.parent, column_prop.key)
        if where in self._watched:
            return
        listener = _listener_for(column_prop.key, self._relationships)
        # raw, retval and include_key (which adds nothing to a scalar "set"): SQLAlchemy then
        # calls the listener as it is, with no wrapper around it.
        event.listen(
            column_prop.parent.class_manager[column_prop.key],
            "set",
            listener,
            raw=True,
            retval=True,
            include_key=True,
            propagate=True,
        )
        self._watched[where] = listener

    def remove(self) -> None:
        for (mapper, key), listener in self._watched.items():
            event.remove(mapper.class_manager[key], "set", listener)
        self._watched.clear()


def _listener_for(key: str, relationships: _Relationships) -> Callable[[InstanceState[Any], Any, Any, Any], Any]:
    # Runs on every set of a watched attribute, sessions or not: everything it needs is bound
    # to a local name here, and a cached plan costs one dictionary lookup.
    plans = relationships.plans
    plan_for = relationships.plan
    react = _react

    def on_set(state: InstanceState[Any], value: Any, oldvalue: Any, initiator: Any) -> Any:
        session = state.session
        # Objects outside a Session (being constructed, transient, detached) are left alone,
        # and so are the values the flush copies into foreign keys (SQLAlchemy has no public
        # flag for "inside a flush"; `_flushing` has meant just that for years, 2.0 and 2.1).
        if session is None or session._flushing:
            return value
        plan = plans.get((state.mapper, key)) or plan_for(state.mapper, key)
        if plan is _NOTHING:
            return value
        # The value it had changes nothing, unless a many-to-one was pointed elsewhere since:
        # the key set last is the one the flush must write.
        if _equal(value, oldvalue) and not _points_elsewhere(state.dict, plan, key, value):
            return value
        react(session, state, plan, key, value, oldvalue)
        return value

    return on_set


def _points_elsewhere(dict_: dict[str, Any], plan: _Plan, key: str, value: Any) -> bool:
    return any(
        link.key in dict_ and not link.refers_to(dict_[link.key], link.values(dict_, key, value))
        for link in plan.many_to_ones
    )


def _react(session: Session, state: InstanceState[Any], plan: _Plan, key: str, value: Any, oldvalue: Any) -> None:
    pending = state.key is None
    obj = state.obj()
    dict_ = state.dict

    # 1. Many-to-ones that point elsewhere than the new value are stale; what they held (and
    # held before an unflushed change) are parents whose collections may list `obj`, and those
    # it was assigned to in memory may hold it as an unflushed addition.
    remembered: list[object] = []
    assigned: list[tuple[_Link, object]] = []
    stale: list[str] = []
    for link in plan.many_to_ones:
        if link.key not in dict_ or link.refers_to(
            dict_[link.key], (value,) if link.single else link.values(dict_, key, value)
        ):
            continue
        stale.append(link.key)
        if plan.collections:
            history = state.attrs[link.key].history
            for parent in history.added:
                if parent is not None:
                    remembered.append(parent)
                    assigned.append((link, parent))
            remembered.extend(p for p in (*history.unchanged, *history.deleted) if p is not None)
    if stale:
        # Taken out through a many-to-one, the object holds None there, which is stale now.
        if value is not None:
            _refuse_taken_out(session, state, plan, key, value, oldvalue, remembered)
        if pending:
            # Session.expire() refuses pending objects: commit an empty value, which also
            # discards the unflushed change, then unload it.
            for name in stale:
                set_committed_value(obj, name, None)
                del dict_[name]
        elif state.persistent:
            session.expire(obj, stale)
        else:
            return  # deleted: nothing to keep in step
    elif plan.unlinked and value is not None:
        _refuse_taken_out(session, state, plan, key, value, oldvalue, remembered)
    if pending and plan.many_to_ones:
        session.enable_relationship_loading(obj)

    # 2. Collections of the old and the new parent.
    identity_map = session.identity_map
    for link, reverse in plan.collections_and_reverses:
        new_values = (value,) if link.single else link.values(dict_, key, value)
        done: list[object] = []
        for parent in remembered:
            if isinstance(parent, link.parent.class_) and not any(parent is d for d in done):
                done.append(parent)
                added = reverse is not None and any(m is reverse and p is parent for m, p in assigned)
                _refresh_collection(session, link, parent, obj, new_values, True, added)
        old = link.lookup(identity_map, (oldvalue,) if link.single else link.values(dict_, key, oldvalue), pending)
        new = link.lookup(identity_map, new_values, pending)
        for parent in (old, new):
            if parent is not None and not any(parent is d for d in done):
                if parent is _UNKNOWN:
                    # A parent that cannot be told before the flush (the old one is known if a
                    # many-to-one held it): any loaded collection may be the one that changes.
                    if parent is new or not any(isinstance(p, link.parent.class_) for p in remembered):
                        _expire_everywhere(session, link)
                    continue
                done.append(parent)
                _refresh_collection(session, link, parent, obj, new_values, False, False)


def _refresh_collection(
    session: Session,
    link: _Link,
    parent: object,
    obj: object,
    new_values: tuple[Any, ...],
    remembered: bool,
    assigned: bool,
) -> None:
    """Expire ``parent``'s collection, or, if it has unflushed changes, take ``obj`` back out
    of it when an unflushed ``obj.foo = parent`` put it there (``assigned``).

    Costs the same whatever the collection's size: no history of the collection is computed.
    """
    # Most often the collection is not loaded (or was expired by an earlier set): instance_dict()
    # answers that without the state's own lookups.
    parent_dict = instance_dict(parent)
    if link.key not in parent_dict:
        # Not loaded: its next access reads the rows.  A parent that `obj` was assigned to
        # in memory may have the assignment queued by the backref: expiring forgets it.
        if remembered and instance_state(parent).persistent:
            session.expire(parent, [link.key])
        return
    parent_state = instance_state(parent)
    if parent_state.unmodified_intersection((link.key,)):
        if parent_state.persistent:
            _expire_collection(session, parent, link.key)
        return
    # Unflushed changes of its own: keep them, but take back the addition an earlier
    # `bar.foo = parent` made, which the flush would otherwise turn into bar.foo_id.
    if link.refers_to(parent, new_values):
        return
    if not link.uselist:
        # One-to-one: what `obj` displaced carries its own change (the backref set its
        # many-to-one to None), so the parent is left with nothing.
        if remembered and parent_dict[link.key] is obj:
            set_committed_value(parent, link.key, None)
        return
    if assigned:
        _take_out(parent_dict[link.key], obj)


def _take_out(collection: Any, obj: object) -> None:
    """Remove ``obj`` from a loaded collection without events (no backref, no history)."""
    if isinstance(collection, list):
        # An addition is usually at the end: search from there, by identity (list.remove
        # would scan from the start and compare with ==).  list's own __delitem__ skips the
        # instrumented one, as remove_without_event() skips the instrumented remove().
        for index in range(len(collection) - 1, -1, -1):
            if collection[index] is obj:
                list.__delitem__(collection, index)
                return
        return
    adapter = collection_adapter(collection)
    if isinstance(collection, dict):  # keyed by an attribute of the object: its values hold it
        present = any(value is obj for value in collection.values())
    else:
        present = obj in collection
    if adapter is not None and present:
        adapter.remove_without_event(obj)


def _refuse_taken_out(
    session: Session,
    state: InstanceState[Any],
    plan: _Plan,
    key: str,
    value: Any,
    oldvalue: Any,
    remembered: list[object],
) -> None:
    """Refuse a key for an object taken out of a parent's collection, before the flush undoes it.

    ``bar.foo = None`` (or ``foo.bars.remove(bar)``) marks ``bar`` as taken out of
    ``foo.bars``; the flush then writes NULL into its key, or deletes it with a delete-orphan
    cascade, whatever key was set afterwards, and SQLAlchemy has no public way to take that
    mark back.  Only a removal still to be flushed counts: one already flushed left the row
    with a NULL key, or deleted it.
    """
    if state.deleted:
        return  # its DELETE is flushed: nothing left to move
    obj = state.obj()
    dict_ = state.dict
    for link, reverse in plan.collections_and_reverses:
        # The usual way out is through the other side, which then holds None: that test costs
        # nothing, and spares the attribute's own test on every set.
        if reverse is not None and dict_.get(reverse.key, NO_VALUE) is not None:
            continue
        if link.attribute is None or link.attribute.hasparent(state, optimistic=True):
            continue
        if link.delete_orphan:
            # A removal flushed with this cascade deleted the object, so this one is not flushed.
            _refuse(obj, key, value, f"a {link.parent.class_.__name__}.{link.key}", "delete it (delete-orphan)")
        parents = [p for p in remembered if isinstance(p, link.parent.class_)]
        found = link.lookup(session.identity_map, link.values(dict_, key, oldvalue), state.key is None)
        if found is not None and found is not _UNKNOWN:
            parents.append(found)
        for parent in parents:
            parent_state = instance_state(parent)
            if link.key in parent_state.dict and any(
                removed is obj for removed in parent_state.attrs[link.key].history.deleted
            ):
                _refuse(obj, key, value, f"{parent!r}.{link.key}", f"write NULL into {key}")


def _refuse(obj: object, key: str, value: Any, where: str, outcome: str) -> None:
    raise InvalidRequestError(
        f"{obj!r}.{key} = {value!r} is refused: the object was taken out of {where} and that is not "
        f"flushed yet, so the flush would {outcome} whatever the key says (SQLAlchemy has no public way "
        f"to take the removal back); give it its new parent through the relationship instead, or set "
        f"the key without taking the object out first"
    )


def _expire_everywhere(session: Session, link: _Link) -> None:
    """Expire ``link``'s loaded collection on every parent in the session that has no unflushed
    changes in it: the parent concerned is one of them, and the next access of each reloads.

    Costs one pass over the identity map, so it is done once per relationship between flushes:
    a collection reloaded since has autoflushed the change (or, with autoflush off, shows the
    rows as stored, as any expired collection does then).
    """
    swept: set[_Link] = session.info.setdefault(_SWEPT, set())
    if link in swept:
        return
    swept.add(link)
    cls = link.parent.class_
    for parent in list(session.identity_map.values()):
        if isinstance(parent, cls):
            parent_state = instance_state(parent)
            if link.key in parent_state.dict and parent_state.unmodified_intersection((link.key,)):
                _expire_collection(session, parent, link.key)


def _expire_collection(session: Session, parent: object, key: str) -> None:
    """Expire a loaded collection; inside a SAVEPOINT, note it for _savepoint_rolled_back()."""
    session.expire(parent, [key])
    savepoint = session.get_nested_transaction()
    if savepoint is not None:
        noted: list[tuple[SessionTransaction, weakref.ref[object], str]] = session.info.setdefault(_IN_SAVEPOINT, [])
        noted.append((savepoint, weakref.ref(parent), key))


def _savepoint_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """Expire again the collections expired inside a SAVEPOINT that was rolled back.

    A collection read again inside the SAVEPOINT holds its rows, and SQLAlchemy's rollback of a
    SAVEPOINT expires only the objects changed inside it, which the parent is not.
    """
    noted = session.info.get(_IN_SAVEPOINT)
    if not noted:
        return
    kept = []
    for savepoint, ref, key in noted:
        if not _within(savepoint, previous_transaction):
            kept.append((savepoint, ref, key))
            continue
        parent = ref()
        if parent is not None:
            parent_state = instance_state(parent)
            if parent_state.persistent and key in parent_state.dict and parent_state.unmodified_intersection((key,)):
                session.expire(parent, [key])
    noted[:] = kept


def _within(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


def _forget_missing_parents(session: Session, state: InstanceState[Any], links: tuple[_Link, ...]) -> None:
    """Expire the many-to-ones of ``links`` that hold ``None`` though their foreign key is set."""
    dict_ = state.dict
    stale = [
        link.key
        for link in links
        if link.key in dict_
        and dict_[link.key] is None
        and all(_usable(dict_.get(k, NO_VALUE)) for k in link.child_keys)
    ]
    if stale:
        session.expire(state.obj(), stale)


# -- the public class ------------------------------------------------------------------------------


class ExpireRelationshipOnFKChange:
    """Keeps relationships in step with the foreign key attributes they are built on.

    Install it once per declarative base or :class:`~sqlalchemy.orm.registry`, before or
    after the classes are declared; installing again returns the same instance:

    >>> ExpireRelationshipOnFKChange.install(Base) is fk_sync
    True

    **What it watches.**
    Every class mapped by that base, now or later (subclasses included): many-to-one
    relationships (``Bar.foo``), view-only ones too, and one-to-many relationships, lists or
    scalars (``Foo.bars``), also those with no many-to-one on the other side, however they
    were loaded (lazily, or by any eager loader).
    Many-to-many relationships keep their foreign keys in a table no class maps, and
    ``lazy="dynamic"`` and ``lazy="write_only"`` collections query every time: both are left
    alone.

    **Which parents it finds.**
    The old parent is the one the many-to-one holds in memory, or the one the old value refers
    to; the new parent is the one the new value refers to.
    Both are looked up in the session's identity map by primary key, without SQL, so a parent
    the session has not loaded has no loaded collection to refresh either.
    A parent that is itself pending (added, not flushed) is not in the identity map yet: its
    collection, if it was read, does not list the object until it is expired (the commit does
    that).
    When that lookup is impossible (the new value is a SQL expression, the foreign key refers
    to a unique column other than the primary key, or the old value was never loaded or is
    expired and no many-to-one holds the old parent), the relationship's loaded collections are
    expired on every object of the session instead.
    That costs a pass over the session's identity map, made once per relationship between two
    flushes.

    **When both the relationship and the key are set** before a flush:

    * relationship first, then the key (``bar.foo = foo3``, or ``foo3.bars.append(bar)``, then
      ``bar.foo_id = 7``): the key wins; the flush writes 7, ``bar.foo`` loads Foo 7, and
      ``foo3.bars`` lets go of ``bar``; also when 7 is the value the key already had;
    * the key first, then the relationship: the relationship wins, as without the recipe,
      since the flush derives the key from it;
    * the object taken out of its parent's collection (``bar.foo = None``, or
      ``foo1.bars.remove(bar)``), then the key set to a parent: refused with
      :class:`~sqlalchemy.exc.InvalidRequestError`, before anything changes. The flush would
      write NULL into the key (the loaded ``foo1.bars`` lists the removal), or delete the
      object with ``cascade="all, delete-orphan"``, whatever the key says, and SQLAlchemy has
      no public way to take the removal back. Give it the new parent through the relationship
      (``bar.foo = session.get(Foo, 7)``) instead, or set the key alone. Setting the key to
      ``None`` agrees with the removal and is allowed; so is any key once the removal is
      flushed, and a removal queued on a collection that is not loaded is dropped, so the key
      wins there.

    >>> session = Session(engine)
    >>> foo1, bar = session.get(Foo, 1), session.get(Bar, 1)
    >>> foo1.bars
    [Bar(1)]
    >>> bar.foo = None
    >>> bar.foo_id = 7
    Traceback (most recent call last):
    ...
    sqlalchemy.exc.InvalidRequestError: Bar(1).foo_id = 7 is refused: the object was taken out of Foo(1).bars ...
    >>> bar.foo = session.get(Foo, 7)
    >>> session.flush()
    >>> bar.foo_id, foo1.bars
    (7, [])
    >>> session.close()

    **Pending objects.**
    :meth:`Session.expire() <sqlalchemy.orm.Session.expire>` refuses objects that have no row
    yet, and the lazy loader does not run for them.
    For a pending object the recipe discards the relationship's value with
    :func:`~sqlalchemy.orm.attributes.set_committed_value` instead, and turns on
    :meth:`Session.enable_relationship_loading()
    <sqlalchemy.orm.Session.enable_relationship_loading>` for it, so that ``bar.foo`` loads from
    ``bar.foo_id`` before the INSERT.
    That switch is per object, so the object's other relationships load while it is pending
    too: a collection of a pending object whose primary key is already set costs one SELECT
    the first time it is read.
    Such a load never autoflushes, so a parent that is itself still pending reads as ``None``;
    the recipe forgets that ``None`` when the flush has inserted the object
    (:meth:`~sqlalchemy.orm.SessionEvents.pending_to_persistent`), and the next access finds the
    parent.

    **Autoflush off.**
    ``bar.foo`` is still right: its load reads the new value from the object, not from the row.
    The expired collections, though, reload the rows as the database has them, before your
    change, and keep showing them after the flush, until they are expired again (the commit
    does that).

    **SAVEPOINTs.**
    Rolling back a SAVEPOINT (:meth:`Session.begin_nested()
    <sqlalchemy.orm.Session.begin_nested>`) expires only the objects changed inside it; the
    recipe also expires again the collections it expired there, which may have been read
    again inside the SAVEPOINT.

    **What it leaves alone.**
    Objects outside a session: transient ones (so constructing ``Bar(foo_id=7)`` runs no SQL),
    detached ones (a later :meth:`Session.merge() <sqlalchemy.orm.Session.merge>` sets the
    value on the persistent copy, and the recipe reacts there), and deleted ones.
    Rows being loaded or refreshed: loading does not set attributes through events.
    The values the flush itself writes into foreign keys, for instance the NULL it writes into
    the children of a deleted parent.
    An ``UPDATE`` statement that sets a foreign key (``session.execute(update(Bar)...)``):
    SQLAlchemy changes the attribute on the objects in the session without an event, so their
    relationships keep what they held; expire them, or load them again with
    ``populate_existing``.
    A collection with unflushed changes of its own is not expired, since that would throw the
    changes away, so it goes on listing an object moved away by its key, or not listing one
    moved into it, until it is expired; the recipe only takes the object back out of the
    changes an earlier ``bar.foo = parent`` made there, which the flush would otherwise turn
    into ``bar.foo_id``. Without a many-to-one on the child's side there is no such
    ``bar.foo = parent``: an object appended to such a collection in memory is written by the
    flush with that parent, whatever key is set afterwards.
    An object constructed with its foreign key and then added is not in the new parent's
    loaded collection until that collection is expired, as without the recipe.

    **Loaders that raise.**
    A relationship declared with ``lazy="raise"`` or ``lazy="raise_on_sql"`` is expired like any
    other, so the next access raises (or, for ``"raise_on_sql"``, finds the new parent in the
    identity map) instead of showing a stale value; load it again with a query.

    **SQL expressions.**
    A foreign key set to a SQL expression is only known after the flush.
    The relationship is dropped as for any other value; reading it before the flush fails in
    SQLAlchemy's lazy loader as it does for any unloaded relationship, and after the flush it
    loads the row's value.
    The loaded collections of the relationship are expired on every parent in the session (see
    above), so the new parent's lists the object once it is read again.

    **AsyncSession.**
    A set on an object of an :class:`~sqlalchemy.ext.asyncio.AsyncSession` runs the listener in
    plain Python, outside the greenlet in which the session does its IO; it does there what it
    does in a :class:`~sqlalchemy.orm.Session`, none of which is IO: it expires, or changes what
    is held in memory, and sends no SQL.
    So ``bar.foo`` needs no ``await`` when the new parent is in the identity map, and one
    otherwise; an expired collection always needs one:
    ``await foo.awaitable_attrs.bars`` (with :class:`~sqlalchemy.ext.asyncio.AsyncAttrs` in the
    base class) or ``await session.refresh(foo, ["bars"])``, which both autoflush first, as a
    read does in a :class:`~sqlalchemy.orm.Session`; for a pending object, ``awaitable_attrs``
    only, since :meth:`~sqlalchemy.ext.asyncio.AsyncSession.refresh` takes persistent objects.
    Read without ``await``, an expired relationship raises
    :class:`~sqlalchemy.exc.MissingGreenlet`; since its load autoflushes, it is the flush that
    fails, which rolls the transaction back with the unflushed changes, and the session refuses
    every statement until you await its :meth:`~sqlalchemy.ext.asyncio.AsyncSession.rollback`.
    :ref:`reference-expire-on-fk-change-async` shows it run.

    **Cost.**
    A set on an object outside a session costs one function call; on an object in a session,
    a few dictionary lookups per relationship, plus the expiring, and no walk over a collection,
    whatever its size; the one exception is an object taken out of a loaded collection, whose
    removal is looked up in that collection's changes before the set is refused.
    In the cookbook's repository, ``make bench ONLY=expire_on_fk_change`` measures it against
    the same sets without the recipe, also with collections of 10 to 100,000 children.

    Calling the class is the same as :meth:`install`: there is one instance per registry.

    :param target: a declarative base (an unmapped class with a ``registry`` attribute, such as
        a subclass of :class:`~sqlalchemy.orm.DeclarativeBase`), or a registry.
    :type target: type | ~sqlalchemy.orm.registry
    :raises TypeError: ``target`` is neither a :class:`~sqlalchemy.orm.registry` nor an
        unmapped class with a ``registry`` attribute (a mapped class is refused: the recipe
        watches every class of the registry, not only that one).
    """

    _relationships: _Relationships
    _listeners: _Listeners

    def __new__(cls, target: type[Any] | registry) -> "ExpireRelationshipOnFKChange":
        found = _registry_of(target)
        installed = _INSTALLED.get(found)
        if installed is None:
            installed = super().__new__(cls)
            installed._relationships = _Relationships(found)
            installed._listeners = _Listeners(installed._relationships)
            _register(found, installed)
            installed._scan()
        return installed

    @classmethod
    def install(cls, target: type[Any] | registry) -> "ExpireRelationshipOnFKChange":
        """Watch every class mapped by ``target``, now and later.

        Installing again on the same base or registry returns the instance already installed.

        :param target: a declarative base (an unmapped class with a ``registry`` attribute,
            such as a subclass of :class:`~sqlalchemy.orm.DeclarativeBase`), or a registry.
        :type target: type | ~sqlalchemy.orm.registry
        :raises TypeError: ``target`` is neither a :class:`~sqlalchemy.orm.registry` nor an
            unmapped class with a ``registry`` attribute; a mapped class is refused.
        """
        return cls(target)

    def watched(self) -> dict[str, list[str]]:
        """Each watched attribute, and the relationships that follow it.

        Configures the registry's mappers first (as the first query or object would), so that
        every relationship is known:

        >>> fk_sync.watched()
        {'Bar.foo_id': ['Bar.foo', 'Foo.bars']}
        """
        self._relationships.registry.configure()
        self._scan()
        return self._relationships.names()

    def remove(self) -> None:
        """Stop watching: remove the listeners this instance added to the classes.

        Setting a foreign key then behaves as it does without the recipe, and
        :meth:`install` on the same base or registry makes a new instance.
        """
        self._listeners.remove()
        self._relationships.clear()
        _unregister(self._relationships.registry, self)

    def _scan(self) -> None:
        for column_prop in self._relationships.scan():
            self._listeners.watch(column_prop)


# -- one instance per registry ---------------------------------------------------------------------


def _registry_of(target: type[Any] | registry) -> registry:
    if isinstance(target, registry):
        return target
    found = getattr(target, "registry", None) if isinstance(target, type) else None
    if not isinstance(found, registry):
        raise TypeError(f"ExpireRelationshipOnFKChange needs a declarative base or a registry, not {target!r}")
    if isinstance(inspect(target, raiseerr=False), Mapper):
        # Its registry would do, but the reader may expect only this class to be watched.
        raise TypeError(
            f"ExpireRelationshipOnFKChange needs a declarative base or a registry, not the mapped class "
            f"{target.__name__}: it watches every class of a registry; pass the base it inherits from, "
            f"or {target.__name__}.registry"
        )
    return found


# One registry, one installed instance; the module's two global listeners dispatch to it.
_INSTALLED: "weakref.WeakKeyDictionary[registry, ExpireRelationshipOnFKChange]" = weakref.WeakKeyDictionary()
_listening = False


def _register(target: registry, installed: ExpireRelationshipOnFKChange) -> None:
    global _listening
    # Listening only from the first install keeps merely importing the module free of effects.
    if not _listening:
        event.listen(Mapper, "after_configured", _after_configured)
        event.listen(Session, "pending_to_persistent", _pending_to_persistent)
        event.listen(Session, "after_flush", _unswept)
        event.listen(Session, "after_transaction_end", _transaction_ended)
        event.listen(Session, "after_soft_rollback", _savepoint_rolled_back)
        _listening = True
    _INSTALLED[target] = installed


def _unregister(target: registry, installed: ExpireRelationshipOnFKChange) -> None:
    # After remove() and a new install(), removing the old instance again must not drop the new one.
    if _INSTALLED.get(target) is installed:
        del _INSTALLED[target]


def _after_configured() -> None:
    for installed in list(_INSTALLED.values()):
        installed._scan()


def _unswept(session: Session, *args: Any) -> None:
    """After a flush, or the end of a transaction, loaded collections may be stale again."""
    if _SWEPT in session.info:
        del session.info[_SWEPT]


def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    _unswept(session)
    if transaction.parent is None and _IN_SAVEPOINT in session.info:
        del session.info[_IN_SAVEPOINT]


def _pending_to_persistent(session: Session, obj: object) -> None:
    """Forget a ``None`` that a many-to-one loaded while its object was pending.

    Loads for a pending object never autoflush, so a parent that was itself still pending was
    not found; now that both rows exist, the next access loads it.
    """
    state = instance_state(obj)
    installed = _INSTALLED.get(state.mapper.registry)
    if installed is not None:
        _forget_missing_parents(session, state, installed._relationships.many_to_ones_of(state.mapper))
