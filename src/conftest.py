"""The examples in the recipe module's docstrings run too, once per backend."""

from pathlib import Path

from sybil.integration.pytest import pytest_integration as _integration

from tests.pages import sybils
from tests.plugin import register

_collectors = {}


def pytest_configure(config):
    register(config)


def pytest_collect_file(file_path, parent):
    config = parent.config
    if config not in _collectors:
        made = sybils(register(config), str(Path(__file__).parent / "sqlalchemy_cookbook"), "docstrings")
        _collectors[config] = _integration(*made)
    return _collectors[config](file_path, parent)
