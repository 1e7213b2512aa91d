"""Code that runs an event loop of its own, in a process that also drives a browser.

Playwright's sync API (the browser tests, in the same pytest process or xdist worker) leaves
its own loop marked as running in this thread between its calls.  A page, or a library test,
is run as a reader runs it: with no loop running, unless it starts one itself.
"""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_running_loop() -> Iterator[None]:
    """Inside the block, no event loop counts as running in this thread; after it, as before."""
    outer = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(outer)
