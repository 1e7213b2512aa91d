"""Fixtures for the recipe library's tests: a fresh database on every backend under test,
reached through its sync driver and, for the AsyncSession tests, through its async one."""

from collections.abc import Iterator

import pytest
from sqlalchemy import MetaData, create_engine
from sqlalchemy.engine import URL, Engine

from tests.harness.backends import Backend
from tests.harness.pages import ASYNC_DRIVERS
from tests.harness.plugin import register
from tests.library.aio import AsyncRun


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        names = register(metafunc.config).names
        metafunc.parametrize("backend", names, ids=names, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> Backend:
    """One backend under test (the tests that use it run once per backend)."""
    return register(request.config).backend(request.param)


@pytest.fixture(scope="module")
def database_url(backend: Backend) -> Iterator[URL]:
    """A fresh database for the test module, dropped afterwards."""
    with backend.database() as url:
        yield url


@pytest.fixture
def engine(database_url: URL) -> Iterator[Engine]:
    """An engine on the module's database; whatever tables the test made are dropped after it."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()
    cleanup = create_engine(database_url)
    try:
        tables = MetaData()
        tables.reflect(cleanup)
        tables.drop_all(cleanup)
    finally:
        cleanup.dispose()


@pytest.fixture(scope="module")
def async_url(backend: Backend, database_url: URL) -> URL:
    """The module's database, through the backend's async driver (the one the pages use)."""
    return database_url.set(drivername=ASYNC_DRIVERS[backend.name])


@pytest.fixture(scope="module")
def aio(async_url: URL) -> Iterator[AsyncRun]:
    """The module's event loop and AsyncEngine; disposed before the database is dropped."""
    run = AsyncRun(async_url)
    yield run
    run.close()
