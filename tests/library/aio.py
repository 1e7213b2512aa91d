"""Run a test's coroutine: the library's AsyncSession tests stay plain test functions.

One event loop per test module, and one AsyncEngine on the module's database through the
backend's async driver (the drivers the pages use: aiosqlite, asyncpg, aiomysql), so pooled
connections serve every test of the module.
"""

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.harness.loops import no_running_loop

T = TypeVar("T")


class AsyncRun:
    """A test module's event loop, and an AsyncEngine on its database."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url)
        self._runner = asyncio.Runner()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` to its end on the module's loop, as ``asyncio.run()`` would."""
        with no_running_loop():
            return self._runner.run(coroutine)

    def close(self) -> None:
        try:
            self.run(self.engine.dispose())
        finally:
            with no_running_loop():
                self._runner.close()
