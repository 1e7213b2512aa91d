"""Recipes from the SQLAlchemy ORM Cookbook, rebuilt for SQLAlchemy 2.x."""

from importlib.metadata import version as _version

__version__ = _version("sqlalchemy-cookbook")
