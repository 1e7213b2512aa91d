"""The package root: what it exports, and what importing it costs."""

import subprocess
import sys

import sqlalchemy_cookbook


def test_exports_the_three_recipes() -> None:
    """`from sqlalchemy_cookbook import X` works for every name in __all__, from its own module."""
    homes = {name: getattr(sqlalchemy_cookbook, name).__module__ for name in sqlalchemy_cookbook.__all__}
    assert {
        "ExpireRelationshipOnFKChange": "sqlalchemy_cookbook.expire_on_fk_change",
        "PreFilteredQuery": "sqlalchemy_cookbook.prefilter",
        "UniqueObject": "sqlalchemy_cookbook.unique",
    } == homes


def test_site_extensions_do_not_import_sqlalchemy() -> None:
    """Every rebuild of the site imports its extensions; SQLAlchemy would add ~0.2 s to each."""
    code = (
        "import sys, sqlalchemy_cookbook._site, sqlalchemy_cookbook._recipe_script, "
        "sqlalchemy_cookbook._runner, sqlalchemy_cookbook._trim_css; "
        "print(sorted(m for m in sys.modules if m == 'sqlalchemy' or m.startswith('sqlalchemy.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "[]" == out.strip()
