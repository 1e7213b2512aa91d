"""Every test run registers the backend harness (which databases, and the closing summary line)."""

import pytest

from tests.harness.plugin import register


def pytest_configure(config: pytest.Config) -> None:
    register(config)
