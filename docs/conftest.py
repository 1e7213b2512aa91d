"""Every ```python block on every page is a test: Sybil collects them, once per backend."""

from pathlib import Path

from tests.harness.pages import conftest_hooks

pytest_configure, pytest_collect_file = conftest_hooks(str(Path(__file__).parent), "pages")
