"""Recipes from the SQLAlchemy ORM Cookbook, rebuilt for SQLAlchemy 2.x."""

from importlib.metadata import version as _version

from sqlalchemy_cookbook.expire_on_fk_change import ExpireRelationshipOnFKChange
from sqlalchemy_cookbook.prefilter import PreFilteredQuery
from sqlalchemy_cookbook.unique import UniqueObject

__version__ = _version("sqlalchemy-cookbook")

__all__ = [
    "ExpireRelationshipOnFKChange",
    "PreFilteredQuery",
    "UniqueObject",
]
