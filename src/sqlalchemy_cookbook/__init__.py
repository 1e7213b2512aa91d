"""Recipes from the SQLAlchemy ORM Cookbook, rebuilt for SQLAlchemy 2.x."""

from importlib import import_module
from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy_cookbook.expire_on_fk_change import ExpireRelationshipOnFKChange
    from sqlalchemy_cookbook.prefilter import PreFilteredQuery
    from sqlalchemy_cookbook.unique import UniqueObject

__version__ = _version("sqlalchemy-cookbook")

__all__ = [
    "ExpireRelationshipOnFKChange",
    "PreFilteredQuery",
    "UniqueObject",
]

# Each recipe's module is imported on first use: the cookbook site's own Sphinx extensions live
# in this package too, and a rebuild of one page should not pay for importing SQLAlchemy's ORM.
_HOMES = {
    "ExpireRelationshipOnFKChange": "expire_on_fk_change",
    "PreFilteredQuery": "prefilter",
    "UniqueObject": "unique",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
