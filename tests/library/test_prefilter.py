"""PreFilteredQuery: nothing leaks, on every backend, with soft-delete and tenant criteria alike.

One data set serves both kinds of filter: every class has a visible row and hidden rows, and a
hidden row is both soft-deleted and another tenant's, so either filter alone must hide exactly
the hidden rows.  Each path a row can take into a session is either filtered (the matrix) or a
limit the documentation states (the tests further down pin each one).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import sqlalchemy
from sqlalchemy import (
    Column,
    ForeignKey,
    String,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    false,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Engine
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.exc import IntegrityError, InvalidRequestError, LegacyAPIWarning
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    aliased,
    joinedload,
    mapped_column,
    relationship,
    scoped_session,
    selectinload,
    sessionmaker,
    subqueryload,
    with_loader_criteria,
)

from sqlalchemy_cookbook import PreFilteredQuery

SA20 = sqlalchemy.__version__.startswith("2.0.")


class Base(DeclarativeBase):
    pass


class Hideable:
    """The mixin both filters are declared for."""

    tenant: Mapped[str] = mapped_column(String(8), default="a")
    deleted: Mapped[bool] = mapped_column(default=False)


post_tag = Table(
    "post_tag",
    Base.metadata,
    Column("post_id", ForeignKey("post.id"), primary_key=True),
    Column("tag_id", ForeignKey("tag.id"), primary_key=True),
)


class Author(Hideable, Base):
    __tablename__ = "author"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    posts: Mapped[list[Post]] = relationship(back_populates="author", order_by="Post.id")


class Post(Hideable, Base):
    __tablename__ = "post"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
    title: Mapped[str] = mapped_column(String(20), default="")
    author: Mapped[Author] = relationship(back_populates="posts")
    tags: Mapped[list[Tag]] = relationship(secondary=post_tag, order_by="Tag.id")


class Tag(Hideable, Base):
    __tablename__ = "tag"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


HIDDEN = {"tenant": "b", "deleted": True}


def rows() -> list[Any]:
    """Author 1 and posts 10, 12, 13 and tag 20 are visible; author 2, post 11 and tag 21 are hidden.

    Post 12 is visible but its author is hidden; posts 10 and 12 carry a visible and a hidden tag.
    """
    visible_author, hidden_author = Author(id=1), Author(id=2, **HIDDEN)
    visible_tag, hidden_tag = Tag(id=20), Tag(id=21, **HIDDEN)
    return [
        visible_author,
        hidden_author,
        Post(id=10, author=visible_author, tags=[visible_tag, hidden_tag]),
        Post(id=11, author=visible_author, **HIDDEN),
        Post(id=12, author=hidden_author, tags=[visible_tag, hidden_tag]),
        Post(id=13, author=visible_author),
    ]


OPT_OUT = "include_hidden"
SHOW_ALL = {OPT_OUT: True}

FILTERS: dict[str, Callable[[], PreFilteredQuery]] = {
    "soft-delete": lambda: PreFilteredQuery(Hideable, lambda cls: cls.deleted == false(), opt_out=OPT_OUT),
    "tenant": lambda: PreFilteredQuery(
        Hideable,
        lambda cls: cls.tenant == bindparam("current_tenant"),
        params=lambda session: {"current_tenant": session.info["tenant"]},
        opt_out=OPT_OUT,
    ),
}


@pytest.fixture(scope="module")
def loaded(database_url: URL) -> Iterator[Engine]:
    """The module's database with the data set; tests that write roll back."""
    engine = create_engine(database_url)
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add_all(rows())
    yield engine
    Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(params=sorted(FILTERS))
def factory(request: pytest.FixtureRequest, loaded: Engine) -> sessionmaker[Session]:
    """A sessionmaker for tenant "a" with one of the filters installed."""
    made = sessionmaker(loaded, info={"tenant": "a"})
    FILTERS[request.param]().install(made)
    return made


@pytest.fixture
def session(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as session:
        yield session


T = TypeVar("T")


def present(value: T | None) -> T:
    """An object the path starts from, which the filter shows: None fails the test here."""
    assert value is not None
    return value


def legacy_get(session: Session, cls: type[Any], ident: int) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacyAPIWarning)
        return session.query(cls).get(ident)


def bulk_update(session: Session) -> list[int]:
    session.execute(update(Post).values(title="changed"))
    changed = session.scalars(
        select(Post.id).where(Post.title == "changed").order_by(Post.id).execution_options(**SHOW_ALL)
    ).all()
    session.rollback()
    return list(changed)


def bulk_delete(session: Session) -> list[int]:
    # Posts 11 and 13 have no tags, so no foreign key stands in the way of deleting either.
    session.execute(delete(Post).where(Post.id.in_([11, 13])))
    left = session.scalars(select(Post.id).order_by(Post.id).execution_options(**SHOW_ALL)).all()
    session.rollback()
    return list(left)


def update_with_subquery(session: Session) -> list[int]:
    session.execute(
        update(Post)
        .where(Post.author_id.in_(select(Author.id)))
        .values(title="changed")
        .execution_options(synchronize_session=False)
    )
    changed = session.scalars(
        select(Post.id).where(Post.title == "changed").order_by(Post.id).execution_options(**SHOW_ALL)
    ).all()
    session.rollback()
    return list(changed)


PA = aliased(Post)
AA = aliased(Author)

# (path, what the session gets back through it, what it must be when filtered)
MATRIX: list[tuple[str, Callable[[Session], Any], Any]] = [
    ("select", lambda s: s.scalars(select(Post.id).order_by(Post.id)).all(), [10, 12, 13]),
    ("select-entity", lambda s: [p.id for p in s.scalars(select(Post).order_by(Post.id))], [10, 12, 13]),
    ("select-alias", lambda s: s.scalars(select(PA.id).order_by(PA.id)).all(), [10, 12, 13]),
    ("query-all", lambda s: [p.id for p in s.query(Post).order_by(Post.id).all()], [10, 12, 13]),
    ("query-first", lambda s: s.query(Post).filter(Post.id == 11).first(), None),
    ("query-count", lambda s: s.query(Post).count(), 3),
    ("query-get", lambda s: legacy_get(s, Post, 11), None),
    ("session-get", lambda s: s.get(Post, 11), None),
    ("lazy-many-to-one", lambda s: present(s.get(Post, 12)).author, None),
    ("lazy-one-to-many", lambda s: [p.id for p in present(s.get(Author, 1)).posts], [10, 13]),
    (
        "selectinload",
        lambda s: [p.id for p in s.scalars(select(Author).options(selectinload(Author.posts))).one().posts],
        [10, 13],
    ),
    (
        "joinedload",
        lambda s: [p.id for p in s.scalars(select(Author).options(joinedload(Author.posts))).unique().one().posts],
        [10, 13],
    ),
    (
        "subqueryload",
        lambda s: [p.id for p in s.scalars(select(Author).options(subqueryload(Author.posts))).one().posts],
        [10, 13],
    ),
    ("join", lambda s: s.scalars(select(Post.id).join(Post.author).order_by(Post.id)).all(), [10, 13]),
    (
        "join-alias",
        lambda s: s.execute(select(AA.id, PA.id).join(AA.posts.of_type(PA)).order_by(PA.id)).all(),
        [(1, 10), (1, 13)],
    ),
    (
        "outerjoin-alias",
        lambda s: s.execute(select(PA.id, AA.id).outerjoin(PA.author.of_type(AA)).order_by(PA.id)).all(),
        [(10, 1), (12, None), (13, 1)],
    ),
    ("many-to-many-lazy", lambda s: [t.id for t in present(s.get(Post, 10)).tags], [20]),
    (
        "many-to-many-selectinload",
        lambda s: [
            t.id for t in s.scalars(select(Post).where(Post.id == 10).options(selectinload(Post.tags))).one().tags
        ],
        [20],
    ),
    (
        "many-to-many-joinedload",
        lambda s: [
            t.id
            for t in s.scalars(select(Post).where(Post.id == 10).options(joinedload(Post.tags))).unique().one().tags
        ],
        [20],
    ),
    (
        "many-to-many-join",
        lambda s: s.scalars(select(Tag.id).select_from(Post).join(Post.tags).where(Post.id == 10)).all(),
        [20],
    ),
    ("select-exists", lambda s: s.scalar(select(select(Post.id).where(Post.id == 11).exists())), False),
    (
        "scalar-subquery",
        lambda s: s.execute(
            select(Author.id, select(func.count(Post.id)).where(Post.author_id == Author.id).scalar_subquery())
        ).all(),
        [(1, 2)],
    ),
    ("count-select-from", lambda s: s.scalar(select(func.count()).select_from(Post)), 3),
    ("count-column", lambda s: s.scalar(select(func.count(Post.id))), 3),
    ("bulk-update", bulk_update, [10, 12, 13]),
    ("bulk-update-subquery", update_with_subquery, [10, 13]),
    ("bulk-delete", bulk_delete, [10, 11, 12]),
]


@pytest.mark.parametrize(("path", "expected"), [(p, e) for p, _, e in MATRIX], ids=[p for p, _, _ in MATRIX])
def test_path_is_filtered(session: Session, path: str, expected: Any) -> None:
    """Each way a row reaches a session through SQL applies the criteria: no hidden row comes back."""
    run = next(fn for p, fn, _ in MATRIX if p == path)
    assert expected == run(session)


# Where a class appears only in the WHERE clause of a subquery, SQLAlchemy 2.0 adds no criteria
# for it (https://github.com/sqlalchemy/sqlalchemy/issues/13070, fixed in 2.1): a documented limit.
WHERE_ONLY: list[tuple[str, Callable[[Session], Any], Any, Any]] = [
    (
        "any",
        lambda s: s.scalars(select(Author.id).where(Author.posts.any(Post.id == 11))).all(),
        [],
        [1],
    ),
    (
        "has",
        lambda s: s.scalars(select(Post.id).where(Post.author.has(Author.id == 2))).all(),
        [],
        [12],
    ),
    ("exists-where", lambda s: s.scalar(select(exists().where(Post.id == 11))), False, True),
]


@pytest.mark.parametrize(
    ("path", "filtered", "leaked"), [(p, f, x) for p, _, f, x in WHERE_ONLY], ids=[p for p, *_ in WHERE_ONLY]
)
def test_where_only_subquery_is_filtered_from_sqlalchemy_21(
    session: Session, path: str, filtered: Any, leaked: Any
) -> None:
    """any(), has() and exists().where() are filtered on 2.1; on 2.0 they leak, as the docs say."""
    run = next(fn for p, fn, *_ in WHERE_ONLY if p == path)
    assert (leaked if SA20 else filtered) == run(session)


def test_opt_out_shows_every_row(session: Session) -> None:
    """The execution option turns the criteria off for that statement."""
    statement = select(Post.id).order_by(Post.id).execution_options(**SHOW_ALL)
    assert [10, 11, 12, 13] == session.scalars(statement).all()


def test_opt_out_covers_the_statements_eager_loads(session: Session) -> None:
    """selectinload runs as its own statement, with the options of the statement that asked for it."""
    statement = select(Author).where(Author.id == 1).options(selectinload(Author.posts)).execution_options(**SHOW_ALL)
    assert [10, 11, 13] == [p.id for p in session.scalars(statement).one().posts]


def test_opt_out_does_not_reach_later_lazy_loads(session: Session) -> None:
    """An object loaded with the opt-out still gets filtered relationships when they load later."""
    author = session.get(Author, 2, execution_options=SHOW_ALL)
    assert author is not None
    assert [12] == [p.id for p in author.posts]


def test_session_get_returns_an_object_already_held(session: Session) -> None:
    """Limit: session.get() finds a held object in the identity map and emits no SQL to filter."""
    held = session.get(Post, 11, execution_options=SHOW_ALL)
    assert held is session.get(Post, 11)


def test_populate_existing_asks_the_database(session: Session) -> None:
    """The documented way around the identity map: populate_existing=True runs the filtered SELECT."""
    session.get(Post, 11, execution_options=SHOW_ALL)
    assert None is session.get(Post, 11, populate_existing=True)


def test_lazy_many_to_one_returns_an_object_already_held(session: Session) -> None:
    """Limit: a many-to-one lazy load finds a held target in the identity map without SQL."""
    held = session.get(Author, 2, execution_options=SHOW_ALL)
    post = session.get(Post, 12)
    assert post is not None
    assert held is post.author


def test_refresh_of_a_held_object_is_not_filtered(session: Session) -> None:
    """Limit, by design: refreshing an object the session holds loads it (no ObjectDeletedError)."""
    held = session.get(Post, 11, execution_options=SHOW_ALL)
    assert held is not None
    session.expire(held)
    assert 11 == held.id
    session.refresh(held)
    assert "b" == held.tenant


def test_bulk_update_by_primary_key_is_refused(session: Session) -> None:
    """SQLAlchemy gives a bulk UPDATE by primary key no criteria, so the filter refuses to run one."""
    with pytest.raises(InvalidRequestError, match="bulk UPDATE by primary key"):
        session.execute(update(Post), [{"id": 11, "title": "changed"}])


def test_sqlalchemy_gives_bulk_update_by_primary_key_no_criteria(loaded: Engine) -> None:
    """Why the refusal exists: with the criteria option, a bulk UPDATE by primary key still changes a hidden row."""
    criteria = with_loader_criteria(Hideable, lambda cls: cls.deleted == false(), include_aliases=True)
    with Session(loaded) as session:
        session.execute(update(Post).options(criteria), [{"id": 11, "title": "changed"}])
        assert "changed" == session.scalar(select(Post.title).where(Post.id == 11))
        session.rollback()


def test_bulk_update_by_primary_key_runs_with_the_opt_out(session: Session) -> None:
    """The refusal names the way out, and the way out works."""
    session.execute(update(Post).execution_options(**SHOW_ALL), [{"id": 11, "title": "changed"}])
    assert "changed" == session.scalar(select(Post.title).where(Post.id == 11).execution_options(**SHOW_ALL))
    session.rollback()


def test_bulk_update_leaves_held_hidden_objects_alone(session: Session) -> None:
    """synchronize_session's evaluation in Python sees the criteria too: a held hidden object keeps its value."""
    held = session.get(Post, 11, execution_options=SHOW_ALL)
    assert held is not None
    session.execute(update(Post).values(title="changed"))
    assert "" == held.title
    session.rollback()


@pytest.mark.parametrize(
    ("path", "run"),
    [
        ("text", lambda s: s.scalars(text("SELECT id FROM post ORDER BY id")).all()),
        ("table", lambda s: s.scalars(select(Post.__table__.c.id).order_by(Post.__table__.c.id)).all()),
        (
            "from-statement",
            lambda s: [p.id for p in s.scalars(select(Post).from_statement(text("SELECT * FROM post ORDER BY id")))],
        ),
    ],
)
def test_sql_that_names_no_mapped_class_is_not_filtered(
    session: Session, path: str, run: Callable[[Session], Any]
) -> None:
    """Limit: textual SQL and Core statements on the Table have no class to attach criteria to."""
    assert [10, 11, 12, 13] == run(session)


def test_merge_of_a_hidden_row_makes_a_new_object(session: Session) -> None:
    """Limit: merge() looks the row up through the filter, misses the hidden one, and its INSERT collides."""
    session.merge(Tag(id=21))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_insert_is_not_filtered(session: Session) -> None:
    """Limit: the criteria filter rows; they do not stop or fill in a new one."""
    session.execute(insert(Tag).values(id=22, **HIDDEN))
    assert 22 == session.scalar(select(Tag.id).where(Tag.id == 22).execution_options(**SHOW_ALL))
    session.rollback()


@pytest.fixture
def tenants(loaded: Engine) -> sessionmaker[Session]:
    made = sessionmaker(loaded)
    FILTERS["tenant"]().install(made)
    return made


def test_a_session_without_a_tenant_reads_nothing(tenants: sessionmaker[Session]) -> None:
    """params() raising for a session stops its statements: no tenant means no rows, not all rows."""
    with tenants() as session, pytest.raises(KeyError):
        session.scalars(select(Post.id)).all()


def test_a_parameter_cannot_override_the_sessions_tenant(tenants: sessionmaker[Session]) -> None:
    """The session's values win over a parameter of the same name passed to execute()."""
    with tenants(info={"tenant": "a"}) as session:
        assert [10, 12, 13] == session.scalars(select(Post.id).order_by(Post.id), {"current_tenant": "b"}).all()


SHAPES: list[Callable[[Session], list[str]]] = [
    lambda s: [p.tenant for p in s.scalars(select(Post).order_by(Post.id))],
    lambda s: [p.tenant for a in s.scalars(select(Author).options(selectinload(Author.posts))) for p in a.posts],
    lambda s: [t.tenant for p in s.scalars(select(Post).options(joinedload(Post.tags))).unique() for t in p.tags],
    lambda s: [a.tenant for a, p in s.execute(select(Author, PA).join(Author.posts.of_type(PA)))],
    lambda s: [p.tenant for a in s.scalars(select(Author)) for p in a.posts],
    lambda s: [tenant for tenant in s.scalars(select(Tag.tenant).join(Post.tags))],
]


def test_interleaved_tenants_never_see_each_others_rows(loaded: Engine, tenants: sessionmaker[Session]) -> None:
    """Two tenants' sessions, one engine and so one statement cache: each sees its own rows only."""
    with Session(loaded) as setup, setup.begin():
        # Give tenant "b" a visible author of its own, with posts and tags (not soft-deleted).
        setup.add(Author(id=3, tenant="b", posts=[Post(id=14, tenant="b", tags=[Tag(id=23, tenant="b")])]))
    try:
        seen: dict[str, set[str]] = {"a": set(), "b": set()}
        with tenants(info={"tenant": "a"}) as a, tenants(info={"tenant": "b"}) as b:
            for _ in range(25):
                for shape in SHAPES:
                    for name, session in (("a", a), ("b", b)):
                        seen[name].update(shape(session))
                        session.expunge_all()
        assert {"a": {"a"}, "b": {"b"}} == seen
    finally:
        with Session(loaded) as cleanup, cleanup.begin():
            cleanup.execute(post_tag.delete().where(post_tag.c.post_id == 14))
            cleanup.execute(delete(Post).where(Post.id == 14).execution_options(**SHOW_ALL))
            cleanup.execute(delete(Tag).where(Tag.id == 23).execution_options(**SHOW_ALL))
            cleanup.execute(delete(Author).where(Author.id == 3).execution_options(**SHOW_ALL))


def test_the_statement_cache_serves_every_tenant(loaded: Engine, tenants: sessionmaker[Session]) -> None:
    """The tenant is a bound parameter: after the first compile, each tenant's SELECT is a cache hit."""
    hits: list[bool] = []

    def record(
        conn: Any, cursor: Any, statement: str, params: Any, context: DefaultExecutionContext, many: bool
    ) -> None:
        hits.append(context.cache_hit is CacheStats.CACHE_HIT)

    with tenants(info={"tenant": "a"}) as a, tenants(info={"tenant": "b"}) as b:
        a.scalars(select(Post.id)).all()
        event.listen(loaded, "after_cursor_execute", record)
        try:
            for session in (b, a, b):
                session.scalars(select(Post.id)).all()
        finally:
            event.remove(loaded, "after_cursor_execute", record)
    assert [True, True, True] == hits


class Other(DeclarativeBase):
    pass


class Animal(Other):
    __tablename__ = "animal"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(10))
    deleted: Mapped[bool] = mapped_column(default=False)
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "animal"}


class Dog(Animal):
    __mapper_args__ = {"polymorphic_identity": "dog"}


def test_a_mapped_class_covers_its_subclasses(loaded: Engine) -> None:
    """Declared for a mapped class, the criteria apply to queries of its subclasses too."""
    Other.metadata.create_all(loaded)
    try:
        with Session(loaded) as setup, setup.begin():
            setup.add_all([Dog(id=1), Dog(id=2, deleted=True), Animal(id=3, deleted=True)])
        made = sessionmaker(loaded)
        PreFilteredQuery(Animal, lambda cls: cls.deleted == false(), opt_out=OPT_OUT).install(made)
        with made() as session:
            assert ([1], [1]) == (session.scalars(select(Dog.id)).all(), session.scalars(select(Animal.id)).all())
    finally:
        Other.metadata.drop_all(loaded)


class FilteredSession(Session):
    pass


def install_target(kind: str, engine: Engine) -> tuple[Any, Callable[[], Session]]:
    """What to install on, and how to get a session from it."""
    if kind == "sessionmaker":
        made = sessionmaker(engine)
        return made, made
    if kind == "session-subclass":
        return FilteredSession, lambda: FilteredSession(engine)
    if kind == "scoped-session":
        scoped = scoped_session(sessionmaker(engine))
        return scoped, scoped
    one = Session(engine)
    return one, lambda: one


@pytest.mark.parametrize("kind", ["sessionmaker", "session-subclass", "scoped-session", "one-session"])
def test_install_reaches_each_kind_of_target(loaded: Engine, kind: str) -> None:
    """install() accepts what event.listen() accepts for session events: factories, classes, sessions."""
    target, make = install_target(kind, loaded)
    soft_delete = FILTERS["soft-delete"]().install(target)
    session = make()
    try:
        assert [10, 12, 13] == session.scalars(select(Post.id).order_by(Post.id)).all()
    finally:
        session.close()
        soft_delete.uninstall(target)
        if isinstance(target, scoped_session):
            target.remove()


def test_uninstall_stops_the_filter(loaded: Engine) -> None:
    """uninstall() undoes install() on the same target."""
    made = sessionmaker(loaded)
    soft_delete = FILTERS["soft-delete"]().install(made)
    soft_delete.uninstall(made)
    with made() as session:
        assert 4 == session.scalar(select(func.count()).select_from(Post))
