"""Links into SQLAlchemy's documentation: 2.1's by default, 2.0's where a page asks for them."""

import runpy
from pathlib import Path

from sphinx.application import Sphinx

ROOT = Path(__file__).resolve().parents[2]
PAGE = """\
# Links

{meth}`sqlalchemy.orm.Session.get`

{external+sqla20:py:meth}`sqlalchemy.orm.Session.get`
"""


def test_plain_roles_link_to_21_and_external_roles_to_20(tmp_path: Path) -> None:
    """With both inventories loaded (offline, from docs/_inventories), a plain role resolves into
    the 2.1 documentation and an `external+sqla20` role into 2.0's."""
    mapping = runpy.run_path(str(ROOT / "conf.py"))["intersphinx_mapping"]
    source = tmp_path / "src"
    source.mkdir()
    (source / "index.md").write_text(PAGE)
    inventories = {key: (url, str(ROOT / "docs" / inventory)) for key, (url, inventory) in mapping.items()}
    (source / "conf.py").write_text(
        f"extensions = ['myst_parser', 'sphinx.ext.intersphinx']\nintersphinx_mapping = {inventories!r}\n"
    )
    app = Sphinx(str(source), str(source), str(tmp_path / "out"), str(tmp_path / "doctrees"), "html", status=None)
    app.build()
    html = (tmp_path / "out" / "index.html").read_text()
    assert [
        "https://docs.sqlalchemy.org/en/21/orm/session_api.html#sqlalchemy.orm.Session.get",
        "https://docs.sqlalchemy.org/en/20/orm/session_api.html#sqlalchemy.orm.Session.get",
    ] == [line.split('href="')[1].split('"')[0] for line in html.split("<a ")[1:] if "docs.sqlalchemy.org" in line]
