"""The examples in the recipe module's docstrings run too, once per backend."""

from pathlib import Path

from tests.harness.pages import conftest_hooks

pytest_configure, pytest_collect_file = conftest_hooks(str(Path(__file__).parent / "sqlalchemy_cookbook"), "docstrings")
